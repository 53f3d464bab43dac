#!/usr/bin/env bash
# Standard tools on a real mount (README "Standard tools", pcimirror(8)).
# Every slice starts each case holding known old data. After each tool:
#   - the slice holds exactly what a regular file would hold, followed by
#     zeros up to the slice's fixed length; or
#   - the tool failed with an error and the slice is unchanged.
# Device memory outside the declared slices (the gaps) holds random bytes
# and must be byte-identical after the whole suite. Each tool's result is
# printed as a table row ("| tool | result |").
source "$(dirname "$0")/lib.sh"
command -v rsync >/dev/null || skip "no rsync (scripts/install-deps.sh installs it)"
command -v python3 >/dev/null || skip "no python3"
P=$PCIMIRROR

DEV=$(new_loop 256M)
MNT=$(new_mountpoint mnt)
RAM=$SHM.ram
REGION=$((64 << 20))
# name offset length: an aligned slice, a small one, one at an odd offset
# with an odd length; gaps between and after them.
SLICES=("frames $((0)) $((16 << 20))" "cfg $((32 << 20)) $((1 << 20))"
        "odd $(((40 << 20) + 3)) 100001")
specs=()
for s in "${SLICES[@]}"; do read -r n o l <<<"$s"; specs+=(--slice "$n:$o:$l"); done
"$P" format "$DEV" --memory "file=$RAM,size=64M" "${specs[@]}" >/dev/null
head -c $REGION /dev/urandom | dd of="$RAM" conv=notrunc status=none

field_of() {  # field_of NAME 1|2: offset or length
  local s f
  for s in "${SLICES[@]}"; do
    read -r -a f <<<"$s"
    if [[ ${f[0]} == "$1" ]]; then echo "${f[$2]}"; return 0; fi
  done
  die "no slice $1"
}
off_of() { field_of "$1" 1; }
len_of() { field_of "$1" 2; }
# memory_of NAME: the slice's bytes in device memory (the region file).
memory_of() {
  dd if="$RAM" bs=64K iflag=skip_bytes,count_bytes skip="$(off_of "$1")" \
    count="$(len_of "$1")" status=none
}
# gap_sum: md5 of every byte of the region outside the declared slices.
gap_sum() {
  python3 - "$RAM" "$REGION" "${SLICES[@]}" <<'PY'
import hashlib, sys
path, size = sys.argv[1], int(sys.argv[2])
wins = sorted((int(o), int(o) + int(l)) for _, o, l in (s.split() for s in sys.argv[3:]))
h, cur = hashlib.md5(), 0
with open(path, 'rb') as f:
    for start, end in wins + [(size, size)]:
        f.seek(cur); h.update(f.read(start - cur)); cur = end
print(h.hexdigest())
PY
}
# reset NAME: known old data in the slice (written through the mount).
reset() {
  head -c "$(len_of "$1")" /dev/urandom >"$WORK/old.$1"
  dd if="$WORK/old.$1" of="$MNT/$1" bs=1M conv=notrunc status=none
  cmp -s <(memory_of "$1") "$WORK/old.$1" || die "reset of $1"
}
# expect_file NAME FILE: the slice reads as FILE followed by zeros.
expect_file() {
  local size len
  size=$(stat -c %s "$2"); len=$(len_of "$1")
  cmp <(memory_of "$1") <(cat "$2"; head -c $((len - size)) /dev/zero) \
    || die "$CASE: slice $1 is not '$2' followed by zeros"
  [[ $(stat -c %s "$MNT/$1") == "$len" ]] || die "$CASE: size of $1 changed"
}
expect_unchanged() {
  cmp -s <(memory_of "$1") "$WORK/old.$1" || die "$CASE: slice $1 changed"
  [[ $(stat -c %s "$MNT/$1") == $(len_of "$1") ]] || die "$CASE: size of $1 changed"
}
ROWS=()
row() { ROWS+=("| \`$CASE\` | $* |"); log "$CASE: $*"; }
# ok CMD...: the tool must succeed without printing anything on stderr.
ok() {
  local err=$WORK/stderr
  "$@" 2>"$err" || die "$CASE failed: $(cat "$err")"
  [[ ! -s $err ]] || die "$CASE printed errors: $(cat "$err")"
}
# refused CMD...: the tool must fail; prints its message.
refused() {
  if "$@" >/dev/null 2>"$WORK/stderr"; then die "$CASE succeeded"; fi
  head -1 "$WORK/stderr" | sed "s|$WORK|W|g"
}

"$P" mount "$DEV" "$MNT"
gaps_before=$(gap_sum)
log "gap checksum before: $gaps_before"

# Sources: a short file, a sparse file with data at both ends, a full-size
# file, one larger than the slice.
random_file "$WORK/short" 5
truncate -s 12M "$WORK/sparse"
printf 'HEAD' | dd of="$WORK/sparse" conv=notrunc status=none
printf 'MIDDLE' | dd of="$WORK/sparse" bs=1 seek=$((6 << 20)) conv=notrunc status=none
printf 'TAIL' | dd of="$WORK/sparse" bs=1 seek=$(((12 << 20) - 4)) conv=notrunc status=none
truncate -s 10M "$WORK/sparse-hole-end"
printf 'HEAD' | dd of="$WORK/sparse-hole-end" conv=notrunc status=none
head -c 300000 /dev/urandom >"$WORK/small"
head -c 1048576 /dev/urandom >"$WORK/exact"
head -c 50000 /dev/urandom >"$WORK/tiny"

CASE="cp short frames"; reset frames
ok cp "$WORK/short" "$MNT/frames"; expect_file frames "$WORK/short"
row "regular file: 5 MiB, then zeros"
CASE="cp sparse frames"; reset frames
ok cp "$WORK/sparse" "$MNT/frames"; expect_file frames "$WORK/sparse"
row "regular file: holes read as zeros"
CASE="cp --sparse=always (ends in a hole)"; reset frames
ok cp --sparse=always "$WORK/sparse-hole-end" "$MNT/frames"
expect_file frames "$WORK/sparse-hole-end"; row "regular file"
CASE="cp -a small cfg"; reset cfg
ok cp -a "$WORK/small" "$MNT/cfg"; expect_file cfg "$WORK/small"
row "regular file, no messages (ACL and xattr probes get ENODATA)"
CASE="cp exact-size cfg"; reset cfg
ok cp "$WORK/exact" "$MNT/cfg"; expect_file cfg "$WORK/exact"; row "regular file"
CASE="cp larger-than-slice cfg"; reset cfg
msg=$(refused cp "$WORK/short" "$MNT/cfg")
grep -q "No space left" <<<"$msg" || die "$CASE: $msg"
cmp <(memory_of cfg) <(head -c 1048576 "$WORK/short") || die "$CASE: not the bytes that fit"
row "ENOSPC after the bytes that fit, as on a full disk: \`$msg\`"

CASE="dd (truncating)"; reset cfg
ok dd if="$WORK/small" of="$MNT/cfg" bs=64k status=none; expect_file cfg "$WORK/small"
row "regular file"
CASE="dd seek=2 bs=64k (truncates at 128 KiB)"; reset cfg
ok dd if="$WORK/tiny" of="$MNT/cfg" bs=64k seek=2 status=none
{ head -c $((128 << 10)) "$WORK/old.cfg"; cat "$WORK/tiny"; } >"$WORK/want"
expect_file cfg "$WORK/want"; row "regular file: old 128 KiB, new bytes, zeros"
CASE="dd conv=notrunc seek=3 bs=1000"; reset cfg
ok dd if="$WORK/tiny" of="$MNT/cfg" bs=1000 seek=3 conv=notrunc status=none
cp "$WORK/old.cfg" "$WORK/want"
dd if="$WORK/tiny" of="$WORK/want" bs=1000 seek=3 conv=notrunc status=none
cmp <(memory_of cfg) "$WORK/want" || die "$CASE: not overwritten in place"
row "overwrites in place, the rest unchanged"
CASE="dd oflag=direct conv=notrunc (odd slice)"; reset odd
ok dd if="$WORK/tiny" of="$MNT/odd" bs=4096 oflag=direct conv=notrunc status=none
cp "$WORK/old.odd" "$WORK/want"
dd if="$WORK/tiny" of="$WORK/want" conv=notrunc status=none
cmp <(memory_of odd) "$WORK/want" || die "$CASE"; row "overwrites in place"

CASE="cat > odd"; reset odd
cat "$WORK/tiny" >"$MNT/odd" 2>"$WORK/stderr" || die "$CASE"
expect_file odd "$WORK/tiny"; row "regular file"
CASE="tee"; reset cfg
ok tee "$MNT/cfg" <"$WORK/small" >/dev/null; expect_file cfg "$WORK/small"; row "regular file"
CASE="tee -a (append)"; reset cfg
msg=$(refused tee -a "$MNT/cfg" <"$WORK/tiny"); expect_unchanged cfg
row "refused, unchanged (a fixed size cannot grow): \`$msg\`"
CASE="echo >> (append)"; reset odd
if (echo more >>"$MNT/odd") 2>"$WORK/stderr"; then die "$CASE succeeded"; fi
expect_unchanged odd; row "refused, unchanged: \`$(head -1 "$WORK/stderr" | sed 's/.*: //')\`"

CASE="truncate -s 100K"; reset cfg
ok truncate -s 100K "$MNT/cfg"; head -c 102400 "$WORK/old.cfg" >"$WORK/want"
expect_file cfg "$WORK/want"; row "regular file: the first 100 KiB, then zeros"
CASE="truncate -s 0"; reset odd
ok truncate -s 0 "$MNT/odd"; expect_file odd /dev/null; row "zeros"
CASE="truncate -s (own length)"; reset cfg
ok truncate -s 1M "$MNT/cfg"; expect_unchanged cfg; row "no change"
CASE="truncate -s 2M (grow)"; reset cfg
msg=$(refused truncate -s 2M "$MNT/cfg"); expect_unchanged cfg
grep -q "File too large" <<<"$msg" || die "$CASE: $msg"; row "EFBIG, unchanged: \`$msg\`"
CASE="python os.truncate (truncate(2), no descriptor)"; reset cfg
ok python3 -c "import os,sys; os.truncate(sys.argv[1], 4096)" "$MNT/cfg"
head -c 4096 "$WORK/old.cfg" >"$WORK/want"; expect_file cfg "$WORK/want"
row "regular file: the first 4 KiB, then zeros"

CASE="rsync --inplace"; reset cfg
ok rsync --inplace "$WORK/small" "$MNT/cfg"; expect_file cfg "$WORK/small"; row "regular file"
CASE="rsync -a --inplace"; reset frames
ok rsync -a --inplace "$WORK/sparse" "$MNT/frames"; expect_file frames "$WORK/sparse"
row "regular file, no messages"
CASE="rsync -a --inplace (delta over an equal file)"
cp "$WORK/sparse" "$WORK/sparse2"
printf 'CHANGED' | dd of="$WORK/sparse2" bs=1 seek=$((3 << 20)) conv=notrunc status=none
ok rsync -a --inplace --no-whole-file "$WORK/sparse2" "$MNT/frames"
expect_file frames "$WORK/sparse2"; row "regular file (delta transfer)"
CASE="rsync (default: temporary file + rename)"; reset cfg
msg=$(refused rsync "$WORK/small" "$MNT/cfg"); expect_unchanged cfg
row "refused, unchanged: \`$msg\`"

CASE="mv from another filesystem"; reset cfg
msg=$(refused mv "$WORK/small" "$MNT/cfg"); expect_unchanged cfg
[[ -e $WORK/small ]] || die "$CASE: the source is gone"
row "refused, unchanged, source kept: \`$msg\`"
CASE="mv within the mount"; reset cfg; reset odd
msg=$(refused mv "$MNT/cfg" "$MNT/odd"); expect_unchanged cfg; expect_unchanged odd
row "refused, unchanged: \`$msg\`"
CASE="sed -i (editor saving by rename)"; reset cfg
msg=$(refused sed -i s/a/b/ "$MNT/cfg"); expect_unchanged cfg; row "refused, unchanged: \`$msg\`"
CASE="rm"; reset cfg
msg=$(refused rm -f "$MNT/cfg"); expect_unchanged cfg; row "refused, unchanged: \`$msg\`"
CASE="touch new name (editor swap file)"
msg=$(refused touch "$MNT/.cfg.swp"); row "refused: \`$msg\`"
CASE="cp onto a new name"
msg=$(refused cp "$WORK/tiny" "$MNT/newname"); row "refused: \`$msg\`"
CASE="mkdir"; msg=$(refused mkdir "$MNT/dir"); row "refused: \`$msg\`"
CASE="ln -s"; msg=$(refused ln -s x "$MNT/link"); row "refused: \`$msg\`"
CASE="ln (hard link)"; msg=$(refused ln "$MNT/cfg" "$MNT/hard"); row "refused: \`$msg\`"
CASE="mkfifo"; msg=$(refused mkfifo "$MNT/fifo"); row "refused: \`$msg\`"
CASE="touch existing"; reset cfg
ok touch "$MNT/cfg"; expect_unchanged cfg; row "times updated, contents unchanged"
CASE="chmod 600"; ok chmod 600 "$MNT/cfg"
[[ $(stat -c %a "$MNT/cfg") == 600 ]] || die "$CASE"; row "mode committed"
names=$(ls -A "$MNT" | tr '\n' ' ')
[[ $names == "cfg frames odd " ]] || die "the root lists '$names', not exactly the declared slices"
CASE="ls -la"; ok ls -la "$MNT" >/dev/null; row "no messages; lists exactly the declared slices"
CASE="getfattr -d (root and slice)"
ok getfattr --absolute-names -d "$MNT" >/dev/null
ok getfattr --absolute-names -d -m - "$MNT/cfg" >/dev/null; row "no messages"
CASE="cat, cmp, md5sum (reads)"; reset frames
ok cmp "$MNT/frames" "$WORK/old.frames"; row "read device memory exactly"

CASE="mmap MAP_SHARED"
mm=$(python3 - "$MNT/cfg" <<'PY'
import errno, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    mmap.mmap(fd, 4096, mmap.MAP_SHARED)
    print("mapped")
except OSError as e:
    print(errno.errorcode[e.errno])
PY
)
[[ $mm == ENODEV ]] || die "$CASE: $mm (documented: ENODEV)"
row "refused with ENODEV (direct_io: no page cache to keep coherent with the board)"

log "online: a slice added through the MOUNTPOINT appears at once and mirrors"
CASE="pcimirror slice add MOUNTPOINT (in a gap)"
ok "$P" slice add "$MNT" extra:$((48 << 20)):64K >/dev/null
[[ -e $MNT/extra && $(stat -c %s "$MNT/extra") == 65536 ]] || die "$CASE: not visible at once"
ok "$P" sync "$MNT" extra >/dev/null
[[ $(slice_field "$DEV" extra generation) == 1 ]] || die "$CASE: not mirrored"
mirror_of "$DEV" extra "$WORK/extra.disk"
cmp "$WORK/extra.disk" <(dd if="$RAM" bs=64K skip=$((48 << 4)) count=1 status=none) \
  || die "$CASE: the mirror is not the memory at its window"
ok "$P" slice rm "$MNT" extra >/dev/null
[[ ! -e $MNT/extra ]] || die "rm not visible at once"
row "visible at once, mirrored by sync, removed (memory untouched)"

gaps_after=$(gap_sum)
log "gap checksum after:  $gaps_after"
[[ $gaps_after == "$gaps_before" ]] || die "device memory outside the slices changed"

log "the mirrors hold what the tools left: unmount, fsck, restore, compare"
for s in frames cfg odd; do memory_of "$s" >"$WORK/final.$s"; done
"$P" umount "$MNT" >/dev/null
"$P" fsck "$DEV" --verify >/dev/null || die "fsck --verify"
"$P" restore "$DEV" --memory "file=$SHM.r,size=64M" >/dev/null
for s in frames cfg odd; do
  cmp "$WORK/final.$s" <(RAM=$SHM.r memory_of "$s") || die "restored $s differs"
done

log "only root and the mount's owner control the volume, even under allow_other"
chmod 0711 "$WORK"  # another user may reach the mount point
"$P" mount "$DEV" "$MNT" -o allow_other,default_permissions
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
CASE="pcimirror sync (another user)"; before=$(device_sum "$DEV")
msg=$(refused as_nobody "$P" sync "$MNT"); grep -q "Operation not permitted" <<<"$msg" || die "$CASE: $msg"
row "EPERM: \`$msg\`"
CASE="pcimirror slice add MOUNTPOINT (another user)"
msg=$(refused as_nobody "$P" slice add "$MNT" x:$((48 << 20)):4K)
grep -q "Operation not permitted" <<<"$msg" || die "$CASE: $msg"; row "EPERM: \`$msg\`"
CASE="fsync of a read-only descriptor (another user)"
msg=$(refused as_nobody /usr/bin/python3 -c "
import errno, os, sys
try:
    os.fsync(os.open(sys.argv[1], os.O_RDONLY))
except OSError as e:
    sys.exit(errno.errorcode[e.errno])" "$MNT/frames")
[[ $msg == EPERM ]] || die "$CASE: $msg"; row "EPERM"
CASE="cat (another user)"; ok as_nobody cat "$MNT/frames" >/dev/null; row "reads"
[[ $(device_sum "$DEV") == "$before" && ! -e $MNT/x ]] || die "a refused request changed the volume"
"$P" umount "$MNT" >/dev/null

echo
echo "| tool | result on the mount |"
echo "|---|---|"
printf '%s\n' "${ROWS[@]}"
echo "gap checksum before $gaps_before, after $gaps_after"
echo "PASS standard_tools"
