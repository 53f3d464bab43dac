#!/usr/bin/env bash
# pcimirror restore and fsck over damaged mirrors on a real loop device
# (issue 12, defect 6): restore tries every slice, prints per slice what it
# restored (a fallback names the damaged copy, its errno and bytes) or, for
# a failed slice, the device memory it wrote, and exits 1 naming the failed
# slices; fsck --verify --json reports every damaged copy with its copy,
# errno and bytes, and --repair acts on the one it can.
#
# The damage here is a CRC mismatch (bytes overwritten with dd). An
# unreadable sector (EIO) cannot be made on this host without device-mapper
# (dm-error/dm-flakey) or a failing disk; the unit tests (FaultyDevice over
# a real file: mirror_test, fsck_test) cover EIO on the same code paths.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"

DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=16M" \
  --slice a:0:4M --slice b:4M:1M --slice c:8M:3M >/dev/null
"$PCIMIRROR" mount "$DEV" "$MNT"
random_file "$WORK/a1" 4; random_file "$WORK/a2" 4
random_file "$WORK/b1" 1; random_file "$WORK/c1" 3
cp "$WORK/a1" "$MNT/a"  # a: generation 1, then 2 (two copies)
cp "$WORK/a2" "$MNT/a"
cp "$WORK/b1" "$MNT/b"  # b, c: generation 1 only
cp "$WORK/c1" "$MNT/c"
fusermount3 -u "$MNT"; wait_released "$DEV"
expect_rc() { local want=$1; shift; set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == "$want" ]] || die "$* exited $rc, not $want: $out"; }

# Damage a's current copy in chunk 1 and c's only copy in chunk 2.
a_start=$(slice_field "$DEV" a 'extents[0].start_sector')
c_start=$(slice_field "$DEV" c 'extents[0].start_sector')
printf 'XX' | dd of="$DEV" bs=1 seek=$((a_start * 512 + 1048576 + 77)) conv=notrunc status=none
printf 'XX' | dd of="$DEV" bs=1 seek=$((c_start * 512 + 2097152 + 5)) conv=notrunc status=none
sync

log "restore (inline) goes on past the failed slice and says what it wrote"
head -c $((16 * 1048576)) /dev/zero | tr '\0' '\125' >"$SHM.r"
expect_rc 1 "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.r" -o restore_verify=inline
grep -q "^restored a .*generation 1.*current mirror, copy [01] (generation 2) is damaged: chunk 1 fails its CRC32C (EUCLEAN; slice bytes \[1048576, 2097152)" <<<"$out" \
  || die "a's fallback note: $out"
grep -q "^restored b " <<<"$out" || die "b was not restored: $out"
grep -q "^failed   c  *2097152 bytes of device memory written: \[8388608, 10485760) from copy 0 (generation 1)" <<<"$out" \
  || die "c's written ranges: $out"
grep -q "restore failed for 1 of 3 slices (c); fully restored (or skipped, never mirrored): a, b" <<<"$out" \
  || die "summary: $out"
cmp -n 4194304 "$WORK/a1" "$SHM.r" || die "a is not the previous copy"
cmp -n 1048576 -i 0:4194304 "$WORK/b1" "$SHM.r" || die "b differs"
cmp -n 2097152 -i 0:8388608 "$WORK/c1" "$SHM.r" || die "c's verified chunks differ"
head -c 1048576 /dev/zero | tr '\0' '\125' >"$WORK/marks"
cmp -n 1048576 -i $((10 * 1048576)):0 "$SHM.r" "$WORK/marks" \
  || die "c's bytes after the damage were written"

log "restore (prepass) of c alone leaves memory untouched and says so"
head -c $((16 * 1048576)) /dev/zero | tr '\0' '\125' >"$SHM.p"
before=$(md5sum <"$SHM.p")
expect_rc 1 "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.p" c
grep -q "^failed   c  *device memory untouched" <<<"$out" || die "prepass message: $out"
grep -q "slice 'c' failed: no copy is readable and intact: copy 0 (generation 1) is damaged" <<<"$out" \
  || die "error: $out"
[[ $(md5sum <"$SHM.p") == "$before" ]] || die "a refused prepass restore changed memory"

log "fsck --verify --json reports each damaged copy"
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify --json
[[ $(jq '[.findings[] | select(.damage)] | length' <<<"$out") == 2 ]] || die "damage findings: $out"
[[ $(jq -r '.findings[] | select(.damage.slice=="c") | "\(.damage.copy) \(.damage.error) \(.damage.slice_offset_bytes) \(.damage.length_bytes)"' <<<"$out") == "0 EUCLEAN 2097152 1048576" ]] \
  || die "c's damage: $out"
[[ $(jq -r '.findings[] | select(.damage.slice=="a") | .damage.generation' <<<"$out") == 2 ]] \
  || die "a's damage: $out"
log "--repair acts on a (intact previous copy), leaves c: 4"
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify --repair
grep -q "slice 'a': current mirror (generation 2) is damaged.*made the previous copy (generation 1) current.*\[repaired\]" <<<"$out" \
  || die "repair of a: $out"
grep -q "slice 'c': current mirror (generation 1) is damaged.*no intact previous copy exists" <<<"$out" \
  || die "c: $out"
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify
grep -q "slice 'a'" <<<"$out" && die "a still reported after repair: $out"
echo "PASS restore_damage"
