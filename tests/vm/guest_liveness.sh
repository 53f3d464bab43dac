#!/bin/sh
# Runs inside the VM of tests/vm/liveness.sh (busybox sh): what happens when
# the mirror target or the memory goes away (issue 13).
#  d. an NBD device (nbd-server on the guest's loopback) as the mirror target:
#     roundtrip, then the server killed with SIGKILL during a sync, reconnect.
#  a. memory decoding disabled with setpci before a sync: nothing committed.
#  b. memory decoding disabled during a sync: nothing committed.
#  c. board reset (the host zeroes the ivshmem file): sync and the final
#     mirror refused, restore brings back the last good mirror; a second
#     reset accepted with sync --accept-memory.
#  e. hot-unplug (the host's QEMU monitor runs device_del): sync refused,
#     the daemon survives.
# "VMTEST host: ACTION" asks the host to act; the guest then polls for the
# effect. e prints "VMTEST SKIP-SCENARIO: ..." when the guest does not eject
# the device within 20 s.
P=/bin/pcimirror
step() { echo "VMTEST step: $*"; }
note() { echo "VMTEST note: $*"; }
finding() { echo "VMTEST FINDING: $*"; }
skip_scenario() { echo "VMTEST SKIP-SCENARIO: $*"; }
fail() {
  echo "VMTEST FAIL: $*"
  poweroff -f
  exit 1
}
# gen TARGET: the committed metadata generation.
gen() { $P status "$1" --json | sed -n 's/^  "metadata_generation": \([0-9]*\).*/\1/p'; }
# top TARGET KEY: a top-level string field of status --json.
top() { $P status "$1" --json | sed -n "s/^  \"$2\": \"\\(.*\\)\",*\$/\\1/p"; }
daemon_gone() {
  for i in $(seq 150); do
    pidof pcimirror >/dev/null || return 0
    sleep 0.1
  done
  return 1
}
# expect_refused WHAT: the last sync ($rc, $out) failed without a commit.
expect_refused() {
  echo "$out"
  [ "$rc" = 1 ] || fail "$1: sync exited $rc, not 1"
  echo "$out" | grep -q "nothing was committed" || fail "$1: message does not say nothing was committed: $out"
}

DEV=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ]; then DEV=$d; fi
done
[ -n "$DEV" ] || fail "no ivshmem device in the guest"
SLOT=$(basename $DEV)
BAR=$DEV/resource2
echo 1 >$DEV/enable 2>/dev/null
step "ivshmem at $SLOT"
mkdir -p /mnt /var/run /tmp
# The daemon logs to syslog once detached: onto the console, for the host's log.
syslogd -O /dev/console

# ---------------------------------------------------------------- d. NBD
step "d: nbd-server on 127.0.0.1 over a 64 MiB file in the guest's RAM"
ip link set lo up || fail "ip link set lo up"
dd if=/dev/zero of=/tmp/nbd.img bs=1M count=64 2>/dev/null
cat >/tmp/nbd.conf <<EOF
[generic]
listenaddr = 127.0.0.1
[vm]
exportname = /tmp/nbd.img
EOF
nbd_connect() {  # [TRIES]
  for i in $(seq ${1:-20}); do
    nbd-client -N vm 127.0.0.1 10809 /dev/nbd0 -t 5 && return 0
    sleep 0.5
  done
  return 1
}
nbd-server -C /tmp/nbd.conf || fail "nbd-server"
nbd_connect || fail "nbd-client"
[ "$(cat /sys/block/nbd0/size)" = 131072 ] || fail "/dev/nbd0 has $(cat /sys/block/nbd0/size) sectors"
head -c $((2 * 1048576)) /dev/urandom >/tmp/n1.bin
head -c $((24 * 1048576)) /dev/urandom >/tmp/n2.bin
head -c $((24 * 1048576)) /dev/urandom >/tmp/n2b.bin
$P format /dev/nbd0 --memory pci=$SLOT,bar=2 --slice n1:0:2M --slice n2:8M:24M --label nbd || fail "format /dev/nbd0"
$P mount /dev/nbd0 /mnt || fail "mount /dev/nbd0"
dd if=/tmp/n1.bin of=/mnt/n1 bs=1M 2>/dev/null || fail "dd n1"
dd if=/tmp/n2.bin of=/mnt/n2 bs=1M 2>/dev/null || fail "dd n2"
$P sync /mnt || fail "sync to NBD"
umount /mnt || fail "umount"
daemon_gone || fail "daemon still running after umount"
bar_tool $BAR fill 0 || fail "zero the BAR"
$P restore /dev/nbd0 || fail "restore from NBD"
# From here on only explicit syncs mirror: a close does not.
MOPT="-o mirror_on_close=off,write_behind=off"
$P mount /dev/nbd0 /mnt $MOPT || fail "mount /dev/nbd0 again"
cmp /tmp/n1.bin /mnt/n1 || fail "n1 not restored from NBD"
cmp /tmp/n2.bin /mnt/n2 || fail "n2 not restored from NBD"
step "d: NBD roundtrip exact"

step "d: kill -9 nbd-server during a sync of 26 MiB"
G=$(gen /mnt)
dd if=/tmp/n2b.bin of=/mnt/n2 bs=1M 2>/dev/null || fail "dd n2b"
$P sync /mnt >/tmp/sync.out 2>&1 &
SYNC=$!
sleep 0.2
kill -9 $(pidof nbd-server) || fail "kill nbd-server"
wait $SYNC
rc=$?
out=$(cat /tmp/sync.out)
echo "$out"
note "d: sync during the kill exited $rc"
if [ "$rc" = 0 ]; then
  note "d: that sync finished before the kill; syncing again with the server dead"
  G=$(gen /mnt)
  dd if=/tmp/n2b.bin of=/mnt/n2 bs=1M count=1 conv=notrunc 2>/dev/null
  out=$($P sync /mnt 2>&1)
  rc=$?
  echo "$out"
fi
[ "$rc" != 0 ] || fail "d: a sync to a dead NBD server succeeded"
echo "$out" | grep -q "Input/output error\|EIO" || finding "d: the failed sync does not name EIO: $out"
pidof pcimirror >/dev/null || fail "d: the daemon died with the NBD server"
cmp /tmp/n2b.bin /mnt/n2 || fail "d: the daemon does not serve n2 after the failed sync"
$P status /mnt
step "d: restart nbd-server, reconnect /dev/nbd0"
nbd-server -C /tmp/nbd.conf || fail "nbd-server again"
out=$(nbd-client -d /dev/nbd0 2>&1)
note "d: nbd-client -d: rc $? $out"
if nbd_connect 3; then
  note "d: /dev/nbd0 reconnected under the mounted daemon"
  G2=$(gen /dev/nbd0)
  [ "$G2" = "$G" ] || fail "d: the failed sync committed: generation $G -> $G2"
  out=$($P sync /mnt 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 0 ] || fail "d: after reconnect the mounted daemon cannot sync (exit $rc): $out"
else
  # The kernel refuses NBD_CMD_CONNECT on nbd0 while an opener holds it
  # ("nbd: nbd0 already in use"); the daemon closes a device whose writes
  # fail, so this must not happen.
  fail "d: /dev/nbd0 cannot be reconnected under the mounted daemon (nbd0 already in use?)"
fi
G3=$(gen /mnt)
[ "$G3" -gt "$G" ] || fail "d: sync after reconnect did not commit ($G -> $G3)"
umount /mnt || fail "umount"
daemon_gone || fail "daemon still running after umount"
bar_tool $BAR fill 0 || fail "zero the BAR"
$P restore /dev/nbd0 || fail "restore after reconnect"
$P mount /dev/nbd0 /mnt || fail "mount"
cmp /tmp/n1.bin /mnt/n1 || fail "n1 after reconnect"
cmp /tmp/n2b.bin /mnt/n2 || fail "n2 after reconnect"
umount /mnt
daemon_gone || fail "daemon still running after umount"
nbd-client -d /dev/nbd0 >/dev/null 2>&1
kill $(pidof nbd-server) 2>/dev/null
rm -f /tmp/nbd.img /tmp/n1.bin /tmp/n2.bin /tmp/n2b.bin
step "d: PASS"

# ------------------------------------------- a, b, c: the memory goes away
SMALL_OFF=0
BIG_OFF=$((4 * 1048576))
CANARY_OFF=$((60 * 1048576))
head -c 1048576 /dev/urandom >/tmp/small.bin
head -c $((48 * 1048576)) /dev/urandom >/tmp/big.bin
$P format /dev/vda --memory pci=$SLOT,bar=2 --slice small:$SMALL_OFF:1M \
  --slice big:$BIG_OFF:48M --canary $CANARY_OFF --label live || fail "format --canary"
$P mount /dev/vda /mnt $MOPT || fail "mount /dev/vda"
dd if=/tmp/small.bin of=/mnt/small bs=1M 2>/dev/null || fail "dd small"
dd if=/tmp/big.bin of=/mnt/big bs=1M 2>/dev/null || fail "dd big"
$P sync /mnt || fail "first sync"
G=$(gen /mnt)

{
  step "a: setpci clears memory decoding before a sync"
  [ "$(top /mnt memory_state)" = ok ] || fail "a: memory_state is not ok at the start"
  dd if=/tmp/small.bin of=/mnt/small bs=4096 count=1 conv=notrunc 2>/dev/null
  setpci -s $SLOT COMMAND=0:2 || fail "setpci"
  out=$($P sync /mnt 2>&1)
  rc=$?
  expect_refused a
  echo "$out" | grep -q "$SLOT\|/dev/vda" || fail "a: message names neither the device nor the volume: $out"
  echo "$out" | grep -q "setpci -s $SLOT COMMAND=0x2:0x2) once the device is healthy" || fail "a: the remedy is not whole: $out"
  [ "$(top /mnt memory_state)" = device-lost ] || fail "a: memory_state is '$(top /mnt memory_state)', not device-lost"
  [ "$(gen /mnt)" = "$G" ] || fail "a: generation $G -> $(gen /mnt)"
  setpci -s $SLOT COMMAND=2:2 || fail "setpci on"
  $P sync /mnt || fail "a: sync after decoding is back"
  [ "$(gen /mnt)" -gt "$G" ] || fail "a: no commit after decoding is back"
  [ "$(top /mnt memory_state)" = ok ] || fail "a: memory_state not ok after a good sync"
  G=$(gen /mnt)
  step "a: PASS"

  step "b: setpci clears memory decoding during a sync of 49 MiB"
  done_b=
  for delay in 0.2 0.1 0.4 0.05; do
    dd if=/tmp/big.bin of=/mnt/big bs=1M count=1 conv=notrunc 2>/dev/null
    $P sync /mnt >/tmp/sync.out 2>&1 &
    SYNC=$!
    sleep $delay
    setpci -s $SLOT COMMAND=0:2
    wait $SYNC
    rc=$?
    out=$(cat /tmp/sync.out)
    state=$(top /mnt memory_state)
    setpci -s $SLOT COMMAND=2:2
    if [ "$rc" = 0 ]; then
      note "b: the sync finished before setpci (delay $delay s): $out"
      G=$(gen /mnt)
      continue
    fi
    note "b: setpci after $delay s"
    expect_refused b
    [ "$state" = device-lost ] || fail "b: memory_state is '$state', not device-lost"
    [ "$(gen /mnt)" = "$G" ] || fail "b: generation $G -> $(gen /mnt)"
    done_b=1
    break
  done
  [ -n "$done_b" ] || fail "b: every sync finished before setpci"
  $P sync /mnt || fail "b: sync after decoding is back"
  [ "$(gen /mnt)" -gt "$G" ] || fail "b: no commit after decoding is back"
  G=$(gen /mnt)
  step "b: PASS"

  step "c: board reset (the host zeroes the ivshmem file)"
  dd if=/tmp/small.bin of=/mnt/small bs=1M 2>/dev/null
  dd if=/tmp/big.bin of=/mnt/big bs=1M 2>/dev/null
  $P sync /mnt || fail "c: sync before the reset"
  G=$(gen /mnt)
  echo "VMTEST host: zero-ivshmem"
  for i in $(seq 300); do
    bar_tool $BAR check 0 >/dev/null && break
    sleep 0.1
  done
  bar_tool $BAR check 0 || fail "c: the host did not zero the ivshmem file"
  out=$($P sync /mnt 2>&1)
  rc=$?
  expect_refused c
  [ "$(top /mnt memory_state)" = memory-reset ] || fail "c: memory_state is '$(top /mnt memory_state)', not memory-reset"
  [ "$(gen /mnt)" = "$G" ] || fail "c: generation $G -> $(gen /mnt)"
  # A write after the reset: the final mirror at unmount has work, and must
  # still be refused.
  dd if=/tmp/big.bin of=/mnt/small bs=4096 count=1 conv=notrunc 2>/dev/null
  umount /mnt || fail "c: umount"
  daemon_gone || fail "c: daemon still running after umount"
  [ "$(gen /dev/vda)" = "$G" ] || fail "c: the final mirror committed zeros: generation $G -> $(gen /dev/vda)"
  $P restore /dev/vda || fail "c: restore"
  $P mount /dev/vda /mnt $MOPT || fail "c: mount after restore"
  cmp /tmp/small.bin /mnt/small || fail "c: small not restored"
  cmp /tmp/big.bin /mnt/big || fail "c: big not restored"
  $P sync /mnt || fail "c: sync after restore"
  [ "$(gen /mnt)" -gt "$G" ] || fail "c: no commit after restore"
  G=$(gen /mnt)
  step "c: PASS"

  step "c: another reset, declared the truth with sync --accept-memory"
  echo "VMTEST host: zero-ivshmem"
  for i in $(seq 300); do
    bar_tool $BAR check 0 >/dev/null && break
    sleep 0.1
  done
  bar_tool $BAR check 0 || fail "c: the host did not zero the ivshmem file again"
  out=$($P sync /mnt 2>&1)
  rc=$?
  expect_refused c2
  [ "$(top /mnt memory_state)" = memory-reset ] || fail "c2: memory_state is '$(top /mnt memory_state)', not memory-reset"
  $P sync /mnt --accept-memory || fail "c2: sync --accept-memory"
  [ "$(gen /mnt)" -gt "$G" ] || fail "c2: sync --accept-memory did not commit"
  [ "$(top /mnt memory_state)" = ok ] || fail "c2: memory_state is '$(top /mnt memory_state)' after --accept-memory"
  dd if=/tmp/small.bin of=/mnt/small bs=1M 2>/dev/null
  $P sync /mnt || fail "c2: sync after --accept-memory"
  G=$(gen /mnt)
  step "c2: PASS"
}

# ------------------------------------------------------- e. hot-unplug
step "e: device_del of the ivshmem device under a mounted daemon"
dd if=/tmp/small.bin of=/mnt/small bs=4096 count=1 conv=notrunc 2>/dev/null
echo "VMTEST host: device_del"
for i in $(seq 200); do
  [ -e $DEV ] || break
  sleep 0.1
done
if [ -e $DEV ]; then
  skip_scenario "e: $SLOT still present 20 s after device_del (the guest did not eject it)"
else
  note "e: $SLOT is gone from /sys/bus/pci/devices"
  out=$($P sync /mnt 2>&1)
  rc=$?
  echo "$out"
  note "e: sync after the unplug exited $rc; small now reads $(od -An -tx1 -N8 /mnt/small)"
  pidof pcimirror >/dev/null || fail "e: the daemon died after the unplug"
  ls -l /mnt || fail "e: the mount does not answer after the unplug"
  $P status /mnt
  expect_refused e
  [ "$(top /mnt memory_state)" = device-lost ] || fail "e: memory_state is '$(top /mnt memory_state)', not device-lost"
  [ "$(gen /mnt)" = "$G" ] || fail "e: generation $G -> $(gen /mnt)"
  umount /mnt || fail "e: umount"
  daemon_gone || fail "e: daemon still running after umount"
  [ "$(gen /dev/vda)" = "$G" ] || fail "e: the final mirror committed: generation $G -> $(gen /dev/vda)"
  step "e: done"
fi
grep -q " /mnt " /proc/mounts && umount /mnt
sync
echo "VMTEST PASS"
poweroff -f
