#!/bin/sh
# Runs inside the VM of tests/vm/dma.sh (busybox sh): the DMA region (issue
# 14) through the guest's real character-device path. cuse_xdma serves
# /dev/xdma0_c2h_0 and /dev/xdma0_h2c_0 over 64 MiB of card memory (CUSE);
# pcimirror mirrors card addresses 0x100000.. of it to /dev/vda.
P=/bin/pcimirror
X=/bin/cuse_xdma
FAULT=/tmp/xdma.fault
CARD=$((0x100000))
step() { echo "VMTEST step: $*"; }
fail() {
  echo "VMTEST FAIL: $*"
  poweroff -f
  exit 1
}
gen() { $P status "$1" --json | sed -n 's/^  "metadata_generation": \([0-9]*\).*/\1/p'; }
daemon_gone() {
  for i in $(seq 150); do
    pidof pcimirror >/dev/null || return 0
    sleep 0.1
  done
  return 1
}
mkdir -p /mnt /var/run /run /tmp
syslogd -O /dev/console

step "cuse_xdma: 64 MiB card memory, dma_align 4096"
[ -c /dev/cuse ] || fail "no /dev/cuse (cuse module not loaded)"
$X serve xdma0 64M 4096 $FAULT &
for i in $(seq 100); do
  [ -c /dev/xdma0_c2h_0 ] && [ -c /dev/xdma0_h2c_0 ] && break
  sleep 0.1
done
if [ ! -c /dev/xdma0_c2h_0 ] || [ ! -c /dev/xdma0_h2c_0 ]; then fail "CUSE devices did not appear"; fi
ls -l /dev/xdma0_c2h_0 /dev/xdma0_h2c_0

step "the device behaves like XDMA: offset = card address, alignment, range, EIO"
head -c 8192 /dev/urandom >/tmp/probe.bin
$X put /dev/xdma0_h2c_0 0x3000 /tmp/probe.bin || fail "put at 0x3000"
$X get /dev/xdma0_c2h_0 0x3000 8192 /tmp/probe.out || fail "get at 0x3000"
cmp /tmp/probe.bin /tmp/probe.out || fail "pread at card 0x3000 does not return what pwrite put there"
$X get /dev/xdma0_c2h_0 0x2000 8192 /tmp/probe.out || fail "get at 0x2000"
cmp /tmp/probe.bin /tmp/probe.out >/dev/null 2>&1 && fail "the card address is ignored (0x2000 reads what 0x3000 holds)"
out=$($X get /dev/xdma0_c2h_0 0x3000 4096 /tmp/probe.out 8)
echo "$out"
echo "$out" | grep -q EINVAL || fail "a buffer misaligned with the card address was not refused: $out"
out=$($X get /dev/xdma0_c2h_0 0x4000000 4096 /tmp/probe.out)
echo "$out"
echo "$out" | grep -q EINVAL || fail "a read beyond the card memory was not refused: $out"
echo "c2h 0x3000 0x4000" >$FAULT
out=$($X get /dev/xdma0_c2h_0 0x3000 4096 /tmp/probe.out)
echo "$out"
echo "$out" | grep -q EIO || fail "the injected fault did not give EIO: $out"
rm -f $FAULT

step "pcimirror devices lists the channel pair"
out=$($P devices 2>&1)
echo "$out"
echo "$out" | grep -q "xdma0" || fail "devices does not list /dev/xdma0"

ODD_OFF=$((16 * 1048576 + 3))
ODD_LEN=$((2000 * 512 + 17))
head -c $((8 * 1048576)) /dev/urandom >/tmp/a.bin
head -c $ODD_LEN /dev/urandom >/tmp/odd.bin
step "format /dev/vda against xdma=/dev/xdma0,card_offset=$CARD,size=32M"
$P format /dev/vda --memory xdma=/dev/xdma0,card_offset=$CARD,size=32M \
  --slice a:0:8M --slice odd:$ODD_OFF:$ODD_LEN --label dma || fail "format"
$P mount /dev/vda /mnt || fail "mount"
dd if=/tmp/a.bin of=/mnt/a bs=1M 2>/dev/null || fail "dd a"
dd if=/tmp/odd.bin of=/mnt/odd bs=65536 conv=notrunc 2>/dev/null || fail "dd odd"
$P sync /mnt || fail "sync"
cmp /tmp/a.bin /mnt/a || fail "a differs through the mount"
cmp /tmp/odd.bin /mnt/odd || fail "odd differs through the mount"
$P status /mnt --json >/tmp/status.json
grep '"path"' /tmp/status.json
grep -q '"path": "dma"' /tmp/status.json || fail "status does not show path dma"
umount /mnt || fail "umount"
daemon_gone || fail "daemon still running after umount"

step "zero the card memory through h2c, then restore"
dd if=/dev/zero of=/tmp/zero.bin bs=1M count=64 2>/dev/null
$X put /dev/xdma0_h2c_0 0 /tmp/zero.bin || fail "zero the card memory"
$X get /dev/xdma0_c2h_0 $CARD $((8 * 1048576)) /tmp/a.out || fail "get a"
cmp /tmp/a.bin /tmp/a.out >/dev/null 2>&1 && fail "card memory not zeroed"
$P restore /dev/vda || fail "restore"
$X get /dev/xdma0_c2h_0 $CARD $((8 * 1048576)) /tmp/a.out || fail "get a"
cmp /tmp/a.bin /tmp/a.out || fail "a not restored byte for byte (read through c2h)"
$X get /dev/xdma0_c2h_0 $((CARD + ODD_OFF)) $ODD_LEN /tmp/odd.out || fail "get odd"
cmp /tmp/odd.bin /tmp/odd.out || fail "odd not restored byte for byte (read through c2h)"
step "restore exact through c2h"

step "EIO injected mid-sync"
$P mount /dev/vda /mnt -o mirror_on_close=off,write_behind=off || fail "mount again"
head -c $((8 * 1048576)) /dev/urandom >/tmp/a2.bin
head -c $ODD_LEN /dev/urandom >/tmp/odd2.bin
dd if=/tmp/a2.bin of=/mnt/a bs=1M 2>/dev/null || fail "dd a2"
dd if=/tmp/odd2.bin of=/mnt/odd bs=65536 conv=notrunc 2>/dev/null || fail "dd odd2"
G=$(gen /mnt)
# Card addresses of a's second half: the sync reads part of the card memory,
# then fails.
printf 'c2h %x %x\n' $((CARD + 4 * 1048576)) $((CARD + 4 * 1048576 + 4096)) >$FAULT
out=$($P sync /mnt 2>&1)
rc=$?
echo "$out"
[ "$rc" != 0 ] || fail "sync with EIO on c2h succeeded"
echo "$out" | grep -q "Input/output error" || fail "the failed sync does not name EIO: $out"
echo "$out" | grep -q "/dev/xdma0_c2h_0" || fail "the failed sync does not name the device: $out"
G2=$(gen /mnt)
[ "$G2" = "$G" ] || fail "the failed sync committed: generation $G -> $G2"
rm -f $FAULT
$P sync /mnt || fail "sync after the fault cleared"
G3=$(gen /mnt)
[ "$G3" -gt "$G" ] || fail "the sync after the fault did not commit: generation $G -> $G3"
echo "generations: $G before, $G2 after the failed sync, $G3 after the next"
umount /mnt || fail "umount"
daemon_gone || fail "daemon still running after umount"
$X put /dev/xdma0_h2c_0 0 /tmp/zero.bin || fail "zero the card memory again"
step "EIO injected into h2c during restore"
printf 'h2c %x %x\n' $((CARD + ODD_OFF)) $((CARD + ODD_OFF + 1)) >$FAULT
out=$($P restore /dev/vda 2>&1)
rc=$?
echo "$out"
[ "$rc" != 0 ] || fail "restore with EIO on h2c succeeded"
echo "$out" | grep -q "/dev/xdma0_h2c_0" || fail "the failed restore does not name the device: $out"
echo "$out" | grep -q "Input/output error" || fail "the failed restore does not name EIO: $out"
rm -f $FAULT
$P restore /dev/vda || fail "restore after the fault"
$X get /dev/xdma0_c2h_0 $CARD $((8 * 1048576)) /tmp/a.out || fail "get a2"
cmp /tmp/a2.bin /tmp/a.out || fail "a2 not restored byte for byte"
$X get /dev/xdma0_c2h_0 $((CARD + ODD_OFF)) $ODD_LEN /tmp/odd.out || fail "get odd2"
cmp /tmp/odd2.bin /tmp/odd.out || fail "odd2 not restored byte for byte"
sync
echo "VMTEST PASS"
poweroff -f
