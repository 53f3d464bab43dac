#!/usr/bin/env bash
# cp onto a slice, then SIGKILL the daemon without unmounting: the device
# already holds the copied data, because close() returned only after the
# mirror was committed.
source "$(dirname "$0")/lib.sh"

DEV=$(new_loop 256M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=64M" --slice a:0:16M --slice b:16M:16M
"$PCIMIRROR" mount "$DEV" "$MNT"
random_file "$WORK/a.bin" 16
cp "$WORK/a.bin" "$MNT/a"
pid=$(pgrep -f "pcimirror mount $DEV ") || die "no daemon"
log "kill -9 $pid"
kill -9 $pid
for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
# The dead mount answers ENOTCONN until it is lazily unmounted.
if ls "$MNT" 2>/dev/null; then die "mount still serving after SIGKILL"; fi
fusermount3 -uz "$MNT"
mirror_of "$DEV" a "$WORK/a.disk"
cmp "$WORK/a.bin" "$WORK/a.disk" || die "device lost the copied data"
[[ $(slice_field "$DEV" a generation) == 1 ]] || die "generation"
[[ $(slice_field "$DEV" b generation) == 0 ]] || die "b was never written"

log "remount and restore after the crash"
"$PCIMIRROR" mount "$DEV" "$MNT" -o restore=on_mount -o "file=$SHM.fresh,size=64M"
cmp "$WORK/a.bin" "$MNT/a" || die "restore after SIGKILL differs"
fusermount3 -u "$MNT"
wait_released "$DEV"
echo "PASS sigkill"
