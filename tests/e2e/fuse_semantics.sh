#!/usr/bin/env bash
# What a slice file does under ordinary tools: fixed size, ENOSPC past the
# end, O_TRUNC ignored, fsync and sync FILE mirror, statfs, errors.
source "$(dirname "$0")/lib.sh"

DEV=$(new_loop 256M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=32M" --slice small:0:1M --slice big:1M:16M
"$PCIMIRROR" mount "$DEV" "$MNT"

log "a write past the end gets ENOSPC after the bytes that fit"
head -c 3000000 /dev/urandom >"$WORK/too-big"
if out=$(dd if="$WORK/too-big" of="$MNT/small" bs=64k 2>&1); then die "dd past the end succeeded"; fi
grep -q "No space left on device" <<<"$out" || die "dd did not report ENOSPC: $out"
cmp -n 1048576 "$WORK/too-big" "$MNT/small" || die "the bytes that fit were not written"
[[ $(stat -c %s "$MNT/small") == 1048576 ]] || die "size changed"
if cp "$WORK/too-big" "$MNT/small" 2>/dev/null; then die "cp of a too-big file succeeded"; fi

log "O_TRUNC leaves the size unchanged; truncate cannot grow"
: >"$MNT/small"
[[ $(stat -c %s "$MNT/small") == 1048576 ]] || die "O_TRUNC changed the size"
if truncate -s 2M "$MNT/small" 2>/dev/null; then die "truncate grew a slice"; fi

log "fsync (dd conv=fsync) and sync FILE mirror the slice"
g0=$(slice_field "$DEV" big generation)
head -c 4194304 /dev/urandom | dd of="$MNT/big" bs=1M conv=fsync,notrunc status=none
g1=$(slice_field "$DEV" big generation)
((g1 > g0)) || die "conv=fsync did not mirror ($g0 -> $g1)"
sync "$MNT/big"
g2=$(slice_field "$DEV" big generation)
((g2 > g1)) || die "sync FILE did not mirror ($g1 -> $g2)"
"$PCIMIRROR" sync "$MNT" big | grep -q "synced big" || die "pcimirror sync"
((g2 < $(slice_field "$DEV" big generation))) || die "pcimirror sync did not mirror"

log "reads of an unwritten slice reach region memory (direct_io)"
printf 'device-side write' | dd of="$SHM.ram" bs=1 seek=$((1048576 + 4194304)) conv=notrunc status=none
[[ $(dd if="$MNT/big" bs=1 skip=4194304 count=17 status=none) == "device-side write" ]] \
  || die "a device-side change is not visible through the mount"

log "statfs reports the data area"
df -B1 "$MNT" | tail -1
total=$(stat -f -c '%b' "$MNT"); free=$(stat -f -c '%f' "$MNT")
((total > 0 && free < total)) || die "statfs total=$total free=$free"

log "unknown names and directories"
[[ ! -e $MNT/nope ]] || die "lookup of a missing name"
if mkdir "$MNT/dir" 2>/dev/null; then die "mkdir succeeded"; fi

log "status on a non-volume and a bad mount option fail clearly"
if out=$("$PCIMIRROR" status /dev/null 2>&1); then die "status /dev/null succeeded"; fi
grep -q "pcimirror:" <<<"$out" || die "no message: $out"
fusermount3 -u "$MNT"; wait_released "$DEV"
if out=$("$PCIMIRROR" mount "$DEV" "$MNT" -o colour=red 2>&1); then die "bad option accepted"; fi
grep -q "unknown mount option 'colour=red'" <<<"$out" || die "message: $out"
before=$(device_sum "$DEV")
if out=$("$PCIMIRROR" format "$DEV" --force --memory "file=$SHM.ram" --slice a:0:2M --slice b:1M:2M 2>&1); then
  die "overlapping slices accepted"
fi
grep -q "overlap" <<<"$out" || die "message: $out"
[[ $(device_sum "$DEV") == "$before" ]] || die "a refused format changed the device"
if out=$("$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram" --slice a:0:1M 2>&1); then
  die "format over an existing volume without --force"
fi
grep -q -- "--force" <<<"$out" || die "message: $out"
echo "PASS fuse_semantics"
