#!/bin/sh
# Runs inside the VM (busybox sh) against a real PCI device: QEMU's
# ivshmem-plain (vendor 1af4, device 1110), whose BAR 2 is the shared memory.
# Every step prints "VMTEST ..." on the serial console for the host to read.
P=/bin/pcimirror
step() { echo "VMTEST step: $*"; }
fail() { echo "VMTEST FAIL: $*"; poweroff -f; exit 1; }

DEV=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ]; then DEV=$d; fi
done
[ -n "$DEV" ] || fail "no ivshmem device in the guest"
SLOT=$(basename $DEV)
echo 1 > $DEV/enable 2>/dev/null
step "ivshmem at $SLOT"

$P devices | grep -A3 "1af4:1110" || fail "devices does not list ivshmem"
$P devices --json | grep -q '"memory_spec": "pci='$SLOT',bar=2"' || fail "devices --json"

ODD_OFF=$((16 * 1048576 + 3))
ODD_LEN=$((2000 * 512 + 17))
step "format /dev/vda against vendor=0x1af4,device=0x1110,bar=2"
$P format /dev/vda --memory vendor=0x1af4,device=0x1110,bar=2 \
  --slice frames:0:8M --slice odd:$ODD_OFF:$ODD_LEN --label vm || fail "format"

step "bounce=never is refused on a BAR"
mkdir -p /mnt
out=$($P mount /dev/vda /mnt -o bounce=never 2>&1) && fail "bounce=never accepted"
echo "$out"
echo "$out" | grep -q "cannot be pinned" || fail "bounce=never message: $out"

step "a BAR held by a driver is refused with the unbind remedy"
BLK=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x1af4 ] && [ -e $d/driver ] && [ -e $d/resource4 ]; then BLK=$(basename $d); fi
done
[ -n "$BLK" ] || fail "no driver-bound virtio device with BAR 4"
out=$($P restore /dev/vda --memory pci=$BLK,bar=4 2>&1) && fail "mapping a driver-held BAR succeeded"
echo "$out"
echo "$out" | grep -q "driver virtio-pci" || fail "message does not name the driver: $out"
echo "$out" | grep -q "unbind" || fail "message does not say to unbind: $out"

step "a window too small for the slices is refused"
out=$($P mount /dev/vda /mnt -o pci=$SLOT,bar=2,window=0:4M 2>&1) && fail "small window accepted"
echo "$out"
echo "$out" | grep -q "too few for slice" || fail "window message: $out"

step "mount and write the patterns with dd"
$P mount /dev/vda /mnt || fail "mount"
dd if=/data/frames.bin of=/mnt/frames bs=1M 2>/dev/null || fail "dd frames"
dd if=/data/odd.bin of=/mnt/odd bs=65536 conv=notrunc 2>/dev/null || fail "dd odd"
$P sync /mnt || fail "sync"
cmp /data/frames.bin /mnt/frames || fail "frames differs through the mount"
cmp /data/odd.bin /mnt/odd || fail "odd differs through the mount"
$P status /mnt
step "unmount"
umount /mnt || fail "umount"
for i in $(seq 100); do pidof pcimirror >/dev/null || break; sleep 0.1; done
pidof pcimirror >/dev/null && fail "daemon still running after umount"

step "zero the BAR, then restore"
/bin/bar_tool $DEV/resource2 fill 0 || fail "zero the BAR"
/bin/bar_tool $DEV/resource2 check 0 || fail "BAR not zero"
$P restore /dev/vda || fail "restore"
$P status /dev/vda --json
sync
echo "VMTEST PASS"
poweroff -f
