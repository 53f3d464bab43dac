#!/usr/bin/env bash
# The canary (issue 13, item 2; docs/DESIGN.md "Never mirror garbage") with
# the emulated region, on a real loop device and a real FUSE mount:
#  1. format --canary writes the canary into memory; a slice over it, or a
#     canary over a slice, is refused.
#  2. The canary bytes changed behind the daemon's back: sync (one slice,
#     and the group sync) fails with EIO, nothing is committed, status and
#     the xattrs say memory-reset, reads and writes are still served; then
#     `sync --accept-memory` mirrors the memory as it is, under a new nonce.
#  3. A power cycle: unmount, zero the region file, mount without restore:
#     syncs, interval ticks and the final mirror at unmount are all refused
#     and the metadata generation does not move; then `pcimirror restore`
#     puts back the last good mirrors byte for byte and renews the canary,
#     and the next mount mirrors again.
#  4. -o restore=on_mount after a power cycle: restored, and mirrors work.
#  5. `pcimirror canary` on an existing volume (offline and online).
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
P=$PCIMIRROR
DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
RAM=$SHM.ram
CANARY=$((30 * 1048576))

gen() { "$P" status "$DEV" --json | jq -r .metadata_generation; }
field() { "$P" status "$1" --json | jq -r "$2"; }
# canary_hex: the 64 canary bytes in the region file.
canary_hex() { od -An -tx1 -v -j "$CANARY" -N 64 "$RAM" | tr -d ' \n'; }
wait_gone() {
  for _ in $(seq 100); do mountpoint -q "$MNT" || { wait_released "$DEV"; return 0; }; sleep 0.1; done
  die "$MNT still mounted"
}

log "1. format --canary"
out=$("$P" format "$DEV" --memory "file=$RAM,size=32M" --slice a:0:8M \
  --slice b:8M:4M --canary 10M 2>&1) && die "a canary over slice b was accepted"
grep -q "overlaps slice 'b'" <<<"$out" || die "canary over a slice: $out"
out=$("$P" format "$DEV" --memory "file=$RAM,size=32M" --slice a:0:8M \
  --canary $((CANARY + 4)) 2>&1) && die "an unaligned canary was accepted"
grep -q "multiple of 8" <<<"$out" || die "unaligned canary: $out"
"$P" format "$DEV" --memory "file=$RAM,size=32M" --slice a:0:8M \
  --slice b:8M:4M --canary $CANARY >/dev/null
[[ $(canary_hex | cut -c1-16) == 5043494d434e5259 ]] || die "no canary magic in memory: $(canary_hex)"
[[ $(field "$DEV" .canary.offset_bytes) == "$CANARY" ]] || die "status has no canary"
out=$("$P" slice add "$DEV" c:$((CANARY - 4096)):8K 2>&1) && die "a slice over the canary was added"
grep -q "overlap the canary" <<<"$out" || die "slice over the canary: $out"

log "2. canary bytes changed behind the daemon's back"
"$P" mount "$DEV" "$MNT"
[[ $(field "$MNT" .memory_state) == ok ]] || die "memory_state at mount: $(field "$MNT" .memory_state)"
random_file "$WORK/a1" 8
dd if="$WORK/a1" of="$MNT/a" bs=1M conv=notrunc status=none
"$P" sync "$MNT" >/dev/null
[[ $(field "$MNT" .canary.state) == ok ]] || die "canary state after a sync"
g=$(gen)
printf 'XXXXXXXX' | dd of="$RAM" bs=1 seek=$CANARY conv=notrunc status=none
out=$("$P" sync "$MNT" a 2>&1) && die "sync of a was accepted over a changed canary"
grep -q "Input/output error" <<<"$out" || die "sync errno: $out"
grep -q "memory was reset" <<<"$out" || die "sync message: $out"
grep -q "nothing was committed" <<<"$out" || die "sync message: $out"
out=$("$P" sync "$MNT" 2>&1) && die "group sync accepted over a changed canary"
grep -q "accept-memory" <<<"$out" || die "group sync message lacks the remedy: $out"
[[ $(gen) == "$g" ]] || die "a refused sync committed (generation $g -> $(gen))"
[[ $(field "$MNT" .memory_state) == memory-reset ]] || die "status memory_state"
[[ $(field "$MNT" .canary.state) == mismatch ]] || die "status canary state"
[[ $(getfattr --only-values -n user.pcimirror.state "$MNT/a") == memory-reset ]] || die "slice xattr state"
[[ $(getfattr --only-values -n user.pcimirror.memory_state "$MNT") == memory-reset ]] || die "root xattr"
"$P" status "$MNT" | grep -q "memory      memory-reset" || die "status text"
# Still served: reads and writes go to memory.
cmp "$WORK/a1" "$MNT/a" || die "reads while memory-reset"
random_file "$WORK/b1" 4
dd if="$WORK/b1" of="$MNT/b" bs=1M conv=notrunc status=none 2>/dev/null ||
  true  # mirror at close is refused (EIO at close); the write itself landed
cmp "$WORK/b1" "$MNT/b" || die "writes while memory-reset"
[[ $(gen) == "$g" ]] || die "close of a written file committed over reset memory"
out=$("$P" sync "$MNT" --accept-memory)
grep -q "accepted the memory" <<<"$out" || die "accept: $out"
[[ $(field "$MNT" .memory_state) == ok ]] || die "state after accept"
(( $(gen) > g )) || die "accept did not commit"
[[ $(canary_hex | cut -c1-16) == 5043494d434e5259 ]] || die "accept did not rewrite the canary"
mirror_of "$DEV" b "$WORK/b.mirror"
cmp "$WORK/b1" "$WORK/b.mirror" || die "after accept, the mirror of b is not the memory"

log "3. power cycle: zero the region, mount without restore"
"$P" umount "$MNT" >/dev/null
wait_gone
cp "$RAM" "$WORK/good.ram"
gen_a=$(slice_field "$DEV" a generation)
dd if=/dev/zero of="$RAM" bs=1M count=32 conv=notrunc status=none
"$P" mount "$DEV" "$MNT" -o interval=200ms
g=$(gen)  # after the mount's own commit (the mounted mark)
[[ $(field "$MNT" .memory_state) == memory-reset ]] || die "mount did not see the reset"
sleep 1  # several interval ticks
[[ $(gen) == "$g" ]] || die "an interval tick committed over reset memory"
"$P" sync "$MNT" >/dev/null 2>&1 && die "sync accepted after a power cycle"
random_file "$WORK/a2" 8
dd if="$WORK/a2" of="$MNT/a" bs=1M conv=notrunc status=none 2>/dev/null || true
out=$("$P" umount "$MNT" 2>&1) || die "umount failed: $out"
grep -q "not mirroring slice a" <<<"$out" || die "umount did not say why: $out"
wait_gone
[[ $(gen) == "$g" ]] || die "the final mirror at unmount committed over reset memory"
[[ $(slice_field "$DEV" a generation) == "$gen_a" ]] || die "slice a's generation moved"
# One slice of two: its memory is back, b's may not be, so no new canary.
out=$("$P" restore "$DEV" a)
grep -q "only the slices named were restored" <<<"$out" || die "restore of a alone: $out"
grep -q "canary   renewed" <<<"$out" && die "restore of a alone renewed the canary"
# Every slice, named one by one, is every slice: the canary is renewed.
out=$("$P" restore "$DEV" b a)
grep -q "canary   renewed" <<<"$out" || die "restore did not renew the canary: $out"
cmp -n $((12 * 1048576)) "$WORK/good.ram" "$RAM" || die "restore is not the last good mirror"
"$P" mount "$DEV" "$MNT"
[[ $(field "$MNT" .memory_state) == ok ]] || die "after restore the mount is not ok"
"$P" sync "$MNT" >/dev/null || die "sync after restore"
"$P" umount "$MNT" >/dev/null
wait_gone

log "4. restore=on_mount after a power cycle"
cp "$RAM" "$WORK/good2.ram"
dd if=/dev/zero of="$RAM" bs=1M count=32 conv=notrunc status=none
"$P" mount "$DEV" "$MNT" -o restore=on_mount
[[ $(field "$MNT" .memory_state) == ok ]] || die "restore=on_mount left the memory refused"
cmp -n $((12 * 1048576)) "$WORK/good2.ram" "$RAM" || die "restore=on_mount data"
"$P" sync "$MNT" >/dev/null || die "sync after restore=on_mount"
"$P" umount "$MNT" >/dev/null
wait_gone

log "5. pcimirror canary on an existing volume"
DEV2=$(new_loop 64M)
RAM2=$SHM.ram2
"$P" format "$DEV2" --memory "file=$RAM2,size=16M" --slice x:0:4M >/dev/null
[[ $(field "$DEV2" .canary) == null ]] || die "canary without --canary"
out=$("$P" canary "$DEV2" 1M 2>&1) && die "canary over slice x accepted"
grep -q "overlaps slice 'x'" <<<"$out" || die "canary over x: $out"
"$P" canary "$DEV2" 8M >/dev/null
[[ $(field "$DEV2" .canary.offset_bytes) == $((8 * 1048576)) ]] || die "offline canary"
MNT2=$(new_mountpoint mnt2)
"$P" mount "$DEV2" "$MNT2"
"$P" canary "$MNT2" 12M >/dev/null
[[ $(field "$MNT2" .canary.offset_bytes) == $((12 * 1048576)) ]] || die "online canary"
printf 'Y' | dd of="$RAM2" bs=1 seek=$((12 * 1048576 + 40)) conv=notrunc status=none
"$P" sync "$MNT2" >/dev/null 2>&1 && die "sync over a changed (moved) canary"
"$P" sync "$MNT2" --accept-memory >/dev/null
"$P" umount "$MNT2" >/dev/null
echo "PASS canary"
