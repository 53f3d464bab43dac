#!/usr/bin/env bash
# A full target (issue 12, items 5 and 7): the mirror device runs out of
# space mid-sync. The device is a loop device over a sparse image on a
# size-limited tmpfs, so writes past the tmpfs size fail with ENOSPC, which
# the loop device passes to pcimirror's O_DIRECT writes.
# - `pcimirror sync` fails with ENOSPC (not EIO) and names the device;
#   nothing is committed; the daemon keeps serving reads and writes.
# - `pcimirror umount` exits non-zero naming the slice and keeps the mount.
# - A daemon whose final mirror at unmount fails (fusermount3 -u) exits
#   non-zero with a log line naming the slice and the device; the previous
#   mirror restores exactly.
# - Once space is freed, the next sync commits and umount succeeds.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"

TMPFS=$WORK/tmpfs
mkdir -p "$TMPFS"
mount -t tmpfs -o size=64M tmpfs "$TMPFS" || skip "cannot mount a tmpfs"
# Unmounted by lib.sh's cleanup (it lies under $WORK); the loop device over
# it must go first.
IMG=$TMPFS/disk.img
truncate -s 256M "$IMG"
DEV=$(losetup --find --show --direct-io=on "$IMG") || skip "losetup failed"
untrap() {
  local m
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 && $3 != "tmpfs" {print $2}' /proc/mounts); do
    fusermount3 -uz "$m" 2>/dev/null || true
  done
  for _ in $(seq 50); do pgrep -f "pcimirror.*$WORK" >/dev/null || break; sleep 0.1; done
  losetup -d "$DEV" 2>/dev/null || true
  umount -l "$TMPFS" 2>/dev/null || true
  cleanup
}
trap untrap EXIT

MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=32M" \
  --slice a:0:8M --slice b:8M:4M >/dev/null
used_kib() { df -k --output=used "$TMPFS" | tail -1 | tr -d ' '; }
# Room for one 8 MiB mirror of a and 1 MiB more: a's second copy and b's
# first do not fit.
size_kib=$(($(used_kib) + 9 * 1024))
mount -o remount,size=${size_kib}k "$TMPFS"
log "tmpfs ${size_kib} KiB, $(used_kib) KiB used after format"

gen_of() { "$PCIMIRROR" status "$MNT" --json | jq -r --arg n "$1" '.slices[] | select(.name==$n) | .generation'; }
meta_gen() { "$PCIMIRROR" status "$MNT" --json | jq -r .metadata_generation; }

# The daemon in the foreground, so its exit status can be checked.
"$PCIMIRROR" mount "$DEV" "$MNT" -f -o mirror_on_close=off 2>"$WORK/daemon.log" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "mount did not come up: $(cat "$WORK/daemon.log")"

log "the first mirror fits"
random_file "$WORK/old.bin" 8
dd if="$WORK/old.bin" of="$MNT/a" bs=1M conv=notrunc status=none
"$PCIMIRROR" sync "$MNT" a >/dev/null
[[ $(gen_of a) == 1 ]] || die "first mirror not committed"
gen0=$(meta_gen)

log "the second runs out of space: ENOSPC, naming the device, nothing committed"
random_file "$WORK/new.bin" 8
dd if="$WORK/new.bin" of="$MNT/a" bs=1M conv=notrunc status=none
if out=$("$PCIMIRROR" sync "$MNT" a 2>&1); then die "sync on a full device succeeded"; fi
echo "$out"
grep -q "No space left on device" <<<"$out" || die "sync did not report ENOSPC: $out"
grep -q "$DEV" <<<"$out" || die "sync's message does not name $DEV: $out"
[[ $(meta_gen) == "$gen0" ]] || die "metadata generation changed"
[[ $(gen_of a) == 1 ]] || die "slice a's generation changed"
[[ $(getfattr --only-values -n user.pcimirror.state "$MNT/a") == error ]] || die "state is not error"
# A group sync reports the same errno.
if out=$("$PCIMIRROR" sync "$MNT" 2>&1); then die "group sync on a full device succeeded"; fi
grep -q "No space left on device" <<<"$out" || die "group sync did not report ENOSPC: $out"
[[ $(meta_gen) == "$gen0" ]] || die "metadata generation changed by the group sync"
# status shows the failure (issue 13, item 4), in JSON and as text.
err=$("$PCIMIRROR" status "$MNT" --json | jq -r .last_sync_error)
grep -q "No space left on device" <<<"$err" || die "status --json last_sync_error: '$err'"
"$PCIMIRROR" status "$MNT" | grep -q "^last error  .*No space left on device" ||
  die "status does not show the last error: $("$PCIMIRROR" status "$MNT")"

log "the daemon keeps serving"
cmp "$WORK/new.bin" "$MNT/a" || die "read through the mount differs"
random_file "$WORK/b.bin" 4
dd if="$WORK/b.bin" of="$MNT/b" bs=1M conv=notrunc status=none
cmp "$WORK/b.bin" "$MNT/b" || die "write through the mount lost"

log "pcimirror umount fails, names the slices, keeps the mount"
if out=$("$PCIMIRROR" umount "$MNT" 2>&1); then die "umount succeeded with a failed final mirror"; fi
echo "$out"
grep -q "'a'" <<<"$out" || die "umount does not name slice a: $out"
grep -q "No space left on device" <<<"$out" || die "umount does not say ENOSPC: $out"
mountpoint -q "$MNT" || die "umount unmounted despite the failed final mirror"
kill -0 $daemon || die "daemon gone"

log "fusermount3 -u: the daemon's final mirror fails, it exits non-zero"
fusermount3 -u "$MNT"
rc=0
wait $daemon || rc=$?
cat "$WORK/daemon.log"
[[ $rc -ne 0 ]] || die "daemon exited 0 after a failed final mirror"
grep "final mirror" "$WORK/daemon.log" | grep -q "'a'" || die "daemon log does not name slice a"
grep "final mirror" "$WORK/daemon.log" | grep -q "$DEV" || die "daemon log does not name $DEV"

log "the previous mirror restores exactly"
"$PCIMIRROR" restore "$DEV" --memory "file=$SHM.fresh,size=32M" a >/dev/null
head -c 8M "$SHM.fresh" | cmp - "$WORK/old.bin" || die "restored mirror differs from the previous one"

log "space freed: the next sync commits, umount succeeds"
mount -o remount,size=128M "$TMPFS"
"$PCIMIRROR" mount "$DEV" "$MNT" -o mirror_on_close=off
"$PCIMIRROR" sync "$MNT" a >/dev/null || die "sync after freeing space failed"
[[ $(gen_of a) == 2 ]] || die "sync after freeing space not committed"
[[ -z $("$PCIMIRROR" status "$MNT" --json | jq -r .last_sync_error) ]] || die "last_sync_error after a good sync"
# No earlier generation was lost: both are listed and the first restores.
[[ $("$PCIMIRROR" log "$MNT" a --json | jq -c '[.slices[0].generations[].generation]') == "[2,1]" ]] ||
  die "log after the failures: $("$PCIMIRROR" log "$MNT" a --json)"
dd if="$WORK/b.bin" of="$MNT/b" bs=1M conv=notrunc status=none
"$PCIMIRROR" umount "$MNT" || die "umount failed after freeing space"
wait_released "$DEV"
mirror_of "$DEV" a "$WORK/a.disk"
cmp "$WORK/new.bin" "$WORK/a.disk" || die "mirror of a differs"
mirror_of "$DEV" b "$WORK/b.disk"
cmp "$WORK/b.bin" "$WORK/b.disk" || die "final mirror of b differs"
echo "PASS thin_storage"
