#!/usr/bin/env bash
# Clean/dirty shutdown records (issue 15, item 3; docs/FORMAT.md §4 shutdown
# record), with a real daemon on a real loop device:
#  - a fresh volume reports last shutdown clean, 0 dirty shutdowns;
#  - kill -9 of the daemon leaves the mounted mark: status says dirty
#    (counted at the next mount), the next mount logs it, counts 1 and emits
#    a dirty-shutdown event, and status on the mount says dirty, 1;
#  - a clean umount (every slice mirrored) clears the mark: clean, still 1;
#  - a daemon whose final mirror is refused (reset memory) keeps the mark.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
P=$PCIMIRROR
DEV=$(new_loop 64M)
MNT=$(new_mountpoint mnt)
RAM=$SHM.ram
sd() { "$P" status "$1" --json | jq -r ".shutdown.$2"; }
wait_gone() {
  for _ in $(seq 100); do mountpoint -q "$MNT" || { wait_released "$DEV"; return 0; }; sleep 0.1; done
  die "$MNT still mounted"
}

"$P" format "$DEV" --memory "file=$RAM,size=16M" --slice a:0:4M --canary 8M >/dev/null
uuid=$("$P" status "$DEV" --json | jq -r .uuid)
EVENTS=/run/pcimirror/$uuid.events
rm -f "$EVENTS"
[[ $(sd "$DEV" last_shutdown) == clean && $(sd "$DEV" dirty_shutdowns) == 0 ]] || die "fresh volume"

log "kill -9: the mark stays, status says dirty before the next mount"
"$P" mount "$DEV" "$MNT" -f 2>"$WORK/d1.log" &
d=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
[[ $(sd "$MNT" mounted_mark) == true && $(sd "$MNT" last_shutdown) == clean ]] || die "mounted mark"
random_file "$WORK/a1" 4
dd if="$WORK/a1" of="$MNT/a" bs=1M conv=notrunc status=none
kill -9 $d; wait $d 2>/dev/null || true
fusermount3 -uz "$MNT" 2>/dev/null || true
wait_released "$DEV"
[[ $(sd "$DEV" last_shutdown) == dirty && $(sd "$DEV" dirty_shutdowns) == 1 && $(sd "$DEV" uncounted) == true ]] ||
  die "status after kill -9: $("$P" status "$DEV" --json | jq -c .shutdown)"
"$P" status "$DEV" | grep -q "last shutdown: dirty, 1 dirty shutdowns" || die "status text: $("$P" status "$DEV")"

log "the next mount counts it, logs it and emits the event"
"$P" mount "$DEV" "$MNT" -f 2>"$WORK/d2.log" &
d=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
grep -q "last shutdown of $DEV was dirty" "$WORK/d2.log" || die "no log line: $(cat "$WORK/d2.log")"
[[ $(sd "$MNT" last_shutdown) == dirty && $(sd "$MNT" dirty_shutdowns) == 1 && $(sd "$MNT" uncounted) == false ]] ||
  die "status on the mount: $("$P" status "$MNT" --json | jq -c .shutdown)"
(( $(sd "$MNT" last_dirty_shutdown_ns) > 0 )) || die "no time of the dirty shutdown"
grep '"event":"dirty-shutdown"' "$EVENTS" | jq -e '.dirty_shutdowns == "1"' >/dev/null ||
  die "no dirty-shutdown event: $(cat "$EVENTS")"

log "a clean umount clears the mark"
dd if="$WORK/a1" of="$MNT/a" bs=1M conv=notrunc status=none
"$P" umount "$MNT" >/dev/null
wait $d || die "daemon exit status $?"
wait_released "$DEV"
[[ $(sd "$DEV" last_shutdown) == clean && $(sd "$DEV" mounted_mark) == false && $(sd "$DEV" dirty_shutdowns) == 1 ]] ||
  die "after a clean umount: $("$P" status "$DEV" --json | jq -c .shutdown)"
log "a mount whose FUSE mount fails leaves no mark (review finding)"
if command -v unshare >/dev/null; then
  before=$("$P" status "$DEV" --json | jq -c .shutdown)
  unshare -m bash -c "mount --bind /dev/null /dev/fuse && '$P' mount '$DEV' '$MNT' -f" >/dev/null 2>&1 || true
  mountpoint -q "$MNT" && die "it mounted with /dev/fuse gone"
  wait_released "$DEV"
  [[ $("$P" status "$DEV" --json | jq -c .shutdown) == "$before" ]] ||
    die "a failed mount changed the shutdown record: $before -> $("$P" status "$DEV" --json | jq -c .shutdown)"
fi

"$P" mount "$DEV" "$MNT"
[[ $(sd "$MNT" last_shutdown) == clean ]] || die "a clean shutdown reported dirty"

log "a final mirror refused (reset memory) keeps the mark"
printf 'XXXX' | dd of="$RAM" bs=1 seek=$((8 * 1048576 + 20)) conv=notrunc status=none
dd if="$WORK/a1" of="$MNT/a" bs=1M conv=notrunc status=none 2>/dev/null || true
"$P" umount "$MNT" >/dev/null
wait_gone
[[ $(sd "$DEV" last_shutdown) == dirty && $(sd "$DEV" dirty_shutdowns) == 2 ]] ||
  die "after a refused final mirror: $("$P" status "$DEV" --json | jq -c .shutdown)"
grep -q '"event":"memory-reset"' "$EVENTS" || die "no memory-reset event"

log "pcimirror events prints them, and follows new ones until unmount"
"$P" events "$DEV" --no-follow | jq -r .event | tr '\n' ' ' | grep -q "dirty-shutdown.*memory-reset" ||
  die "events --no-follow: $("$P" events "$DEV" --no-follow)"
"$P" mount "$DEV" "$MNT" -o accept_memory
"$P" events "$MNT" >"$WORK/follow.out" &
f=$!
sleep 0.5
"$P" sync "$MNT" >/dev/null
"$P" umount "$MNT" >/dev/null
for _ in $(seq 50); do kill -0 $f 2>/dev/null || break; sleep 0.1; done
kill -0 $f 2>/dev/null && die "events did not stop at unmount"
wait $f || die "events exited $?"
grep -q '"event":"memory-accepted"' "$WORK/follow.out" || die "followed events: $(cat "$WORK/follow.out")"
grep -q '"event":"dirty-shutdown"' "$WORK/follow.out" || die "events did not print the earlier ones first"
rm -f "$EVENTS"
echo "PASS shutdown"
