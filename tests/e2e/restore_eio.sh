#!/usr/bin/env bash
# Real unreadable sectors (issue 12, defect 6): the volume lives on a loop
# device whose backing file is served by pcimirror-unreadable-fs, a FUSE
# filesystem that fails reads of listed byte ranges with EIO, so the loop
# device returns EIO for those sectors as a failing disk does (no
# device-mapper on the test hosts). restore falls back to the intact copy in
# prepass and inline mode and names the copy, EIO and the bytes; a slice
# with no readable copy fails alone (memory untouched) while the others are
# restored, exit 1; fsck --verify reports every unreadable copy and goes on;
# --repair makes the intact copy current.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
UFS=${PCIMIRROR_UNREADABLE_FS:-}
[[ -x $UFS ]] || skip "set PCIMIRROR_UNREADABLE_FS to the pcimirror-unreadable-fs helper"

BACK="$WORK/backing.raw"
truncate -s 128M "$BACK"
: >"$WORK/bad.list"
UMNT=$(new_mountpoint ufs)
"$UFS" "$BACK" "$WORK/bad.list" "$UMNT" -f &
UPID=$!
for _ in $(seq 100); do [[ -e $UMNT/disk ]] && break; sleep 0.1; done
[[ -e $UMNT/disk ]] || die "pcimirror-unreadable-fs did not mount"
DEV=$(losetup --find --show --direct-io=off "$UMNT/disk") || skip "losetup on a FUSE file failed"
eio_cleanup() {
  losetup -d "$DEV" 2>/dev/null || true
  fusermount3 -u "$UMNT" 2>/dev/null || true
  kill "$UPID" 2>/dev/null || true
  cleanup
}
trap eio_cleanup EXIT
expect_rc() { local want=$1; shift; set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == "$want" ]] || die "$* exited $rc, not $want: $out"; }

MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=16M" --slice a:0:4M --slice b:4M:1M >/dev/null
"$PCIMIRROR" mount "$DEV" "$MNT"
random_file "$WORK/a1" 4; random_file "$WORK/a2" 4; random_file "$WORK/b1" 1
cp "$WORK/a1" "$MNT/a"  # a: generation 1, then 2
cp "$WORK/a2" "$MNT/a"
cp "$WORK/b1" "$MNT/b"  # b: generation 1 only
fusermount3 -u "$MNT"; wait_released "$DEV"

log "a read of the current copy's bad sector fails with EIO on the device"
a_start=$(slice_field "$DEV" a 'extents[0].start_sector')
bad=$((a_start * 512 + 2097152 + 4096))
echo "$bad 512" >"$WORK/bad.list"
if dd if="$DEV" of=/dev/null bs=4096 skip=$((bad / 4096)) count=1 iflag=direct status=none 2>"$WORK/dd.err"; then
  die "the bad sector reads"
fi
grep -q "Input/output error" "$WORK/dd.err" || die "dd: $(cat "$WORK/dd.err")"

for mode in prepass inline; do
  log "restore ($mode) falls back to the previous copy and names copy, EIO and bytes"
  : >"$SHM.r$mode"; truncate -s 16M "$SHM.r$mode"
  expect_rc 0 "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.r$mode" -o restore_verify=$mode
  grep -q "^restored a .*generation 1.*current mirror, copy [01] (generation 2) is unreadable: mirror device bytes \[[0-9]*, [0-9]*) fail to read with EIO" <<<"$out" \
    || die "a's note: $out"
  cmp -n 4194304 "$WORK/a1" "$SHM.r$mode" || die "a is not the previous copy ($mode)"
  cmp -n 1048576 -i 0:4194304 "$WORK/b1" "$SHM.r$mode" || die "b differs ($mode)"
done

log "b's only copy unreadable too: a restores, b fails untouched, exit 1"
b_start=$(slice_field "$DEV" b 'extents[0].start_sector')
echo "$((b_start * 512 + 8192)) 512" >>"$WORK/bad.list"
head -c $((16 * 1048576)) /dev/zero | tr '\0' '\125' >"$SHM.m"
expect_rc 1 "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.m"
grep -q "^restored a " <<<"$out" || die "a: $out"
grep -q "^failed   b  *device memory untouched" <<<"$out" || die "b: $out"
grep -q "slice 'b' failed: no copy is readable and intact: copy 0 (generation 1) is unreadable: .*EIO" <<<"$out" \
  || die "b's error: $out"
grep -q "restore failed for 1 of 2 slices (b); fully restored (or skipped, never mirrored): a" <<<"$out" \
  || die "summary: $out"
cmp -n 4194304 "$WORK/a1" "$SHM.m" || die "a differs"
head -c 1048576 /dev/zero | tr '\0' '\125' >"$WORK/marks"
cmp -n 1048576 -i 4194304:0 "$SHM.m" "$WORK/marks" || die "b's memory was written"

log "fsck --verify goes past EIO and reports both unreadable copies: 4"
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify --json
[[ $(jq -r '[.findings[] | select(.damage) | "\(.damage.slice) \(.damage.error) \(.damage.unreadable)"] | sort | join(",")' <<<"$out") == "a EIO true,b EIO true" ]] \
  || die "damage: $out"
log "--repair makes a's intact previous copy current; b stays: 4, then only b"
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify --repair
grep -q "slice 'a': current mirror (generation 2) is unreadable.*made the previous copy (generation 1) current.*\[repaired\]" <<<"$out" \
  || die "repair: $out"
expect_rc 4 "$PCIMIRROR" fsck "$DEV" --verify
grep -q "slice 'a'" <<<"$out" && die "a still damaged after repair: $out"
grep -q "slice 'b': current mirror (generation 1) is unreadable" <<<"$out" || die "b: $out"
echo "PASS restore_eio"
