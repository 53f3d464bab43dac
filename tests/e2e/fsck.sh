#!/usr/bin/env bash
# pcimirror fsck on a real loop device: fsck(8) exit codes (0 clean, 1
# repaired, 4 left, 8 operational), no change without --repair, --json, and
# mount's fallback to the older metadata slot with a warning.
source "$(dirname "$0")/lib.sh"

DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=16M" --slice a:0:4M --slice b:4M:1M >/dev/null
"$PCIMIRROR" mount "$DEV" "$MNT"
random_file "$WORK/a1" 4; random_file "$WORK/a2" 4
cp "$WORK/a1" "$MNT/a"
cp "$WORK/a2" "$MNT/a"
fusermount3 -u "$MNT"; wait_released "$DEV"
expect_rc() { local want=$1; shift; set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == "$want" ]] || die "$* exited $rc, not $want: $out"; }

log "clean volume: 0"
expect_rc 0 "$PCIMIRROR" fsck "$DEV" --verify
[[ $("$PCIMIRROR" fsck "$DEV" --json | jq .exit_code) == 0 ]] || die "--json exit_code"

log "damaged current mirror: 4 with --verify, untouched without --repair"
start=$(slice_field "$DEV" a 'extents[0].start_sector')
printf 'XX' | dd of="$DEV" bs=1 seek=$((start * 512 + 777)) conv=notrunc status=none
expect_rc 0 "$PCIMIRROR" fsck "$DEV"
before=$(device_sum "$DEV")
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify
grep -q "slice 'a': current mirror (generation 2) is damaged" <<<"$out" || die "message: $out"
[[ $(device_sum "$DEV") == "$before" ]] || die "fsck without --repair changed the device"
log "--repair makes the intact previous copy current: 1, then 0"
expect_rc 1 "$PCIMIRROR" fsck "$DEV" --verify --repair
expect_rc 0 "$PCIMIRROR" fsck "$DEV" --verify
"$PCIMIRROR" restore "$DEV" --memory "file=$SHM.r,size=16M" a >/dev/null
cmp -n 4194304 "$WORK/a1" "$SHM.r" || die "restore after repair is not the previous copy"

log "damaged primary superblock: 4, repaired from the backup: 1"
printf 'junk' | dd of="$DEV" bs=1 seek=70 conv=notrunc status=none
expect_rc 4 "$PCIMIRROR" fsck "$DEV"
expect_rc 1 "$PCIMIRROR" fsck "$DEV" --repair
expect_rc 0 "$PCIMIRROR" fsck "$DEV"

log "damaged newest metadata slot: mount falls back to the older one and warns"
json=$("$PCIMIRROR" status "$DEV" --json)
gen=$(jq .metadata_generation <<<"$json")
slot_sector=$(( (1048576 + (gen % 2) * 4194304) / 512 ))
printf 'junk' | dd of="$DEV" bs=1 seek=$((slot_sector * 512 + 80)) conv=notrunc status=none
# Read-only: a writable mount's first commit (the mounted mark) would
# rewrite the damaged slot.
"$PCIMIRROR" mount "$DEV" "$MNT" -o ro 2>"$WORK/mount.err"
grep -q "metadata slot $((gen % 2)) .* is damaged" "$WORK/mount.err" || die "no warning: $(cat "$WORK/mount.err")"
[[ $("$PCIMIRROR" status "$MNT" --json 2>/dev/null | jq .metadata_generation) == $((gen - 1)) ]] || die "did not fall back"
fusermount3 -u "$MNT"; wait_released "$DEV"
expect_rc 0 "$PCIMIRROR" fsck "$DEV"
grep -q "holds no valid table" <<<"$out" || die "fsck does not mention the slot: $out"
expect_rc 1 "$PCIMIRROR" fsck "$DEV" --repair

log "operational errors: 8"
expect_rc 8 "$PCIMIRROR" fsck /dev/null
truncate -s 16M "$WORK/empty.img"
expect_rc 8 "$PCIMIRROR" fsck "$WORK/empty.img"
grep -q "no pcimirror volume" <<<"$out" || die "message: $out"
echo "PASS fsck"
