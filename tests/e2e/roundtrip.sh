#!/usr/bin/env bash
# Issue 2's end-to-end flow on a real loop device:
#  format, mount, dd 64 MiB onto one slice and cp a file onto another,
#  unmount, read the raw device at the extents that status --json reports,
#  then remount with restore into a fresh zeroed region and compare through
#  the mount.
source "$(dirname "$0")/lib.sh"

DEV=$(new_loop 512M)
MNT=$(new_mountpoint mnt)
log "format $DEV"
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=128M" \
  --slice frames:0:64M --slice config:64M:8M --slice odd:$((80 * 1048576 + 5)):1000017 --label e2e

log "mount"
"$PCIMIRROR" mount "$DEV" "$MNT"
mountpoint -q "$MNT" || die "not mounted"
[[ $(ls "$MNT" | sort | tr '\n' ' ') == "config frames odd " ]] || die "listing: $(ls "$MNT")"
[[ $(stat -c %s "$MNT/frames") == 67108864 ]] || die "frames size"
[[ $(stat -c %o "$MNT/frames") == 1048576 ]] || die "st_blksize is not 1 MiB"

random_file "$WORK/frames.bin" 64
random_file "$WORK/config.bin" 8
head -c 1000017 /dev/urandom >"$WORK/odd.bin"
log "dd 64 MiB onto frames, cp onto config, dd onto the unaligned slice"
dd if="$WORK/frames.bin" of="$MNT/frames" bs=1M status=none
cp "$WORK/config.bin" "$MNT/config"
dd if="$WORK/odd.bin" of="$MNT/odd" bs=64k conv=notrunc status=none

# The close after each write mirrored and committed the slice.
for s in frames config odd; do
  [[ $(slice_field "$DEV" $s generation) -ge 1 ]] || die "$s not mirrored at close"
done
cmp "$WORK/frames.bin" "$MNT/frames" || die "read back through the mount differs"
[[ $(stat -c %s "$MNT/config") == 8388608 ]] || die "cp changed the slice size"
"$PCIMIRROR" status "$MNT"

log "unmount with umount(8)"
umount "$MNT"
wait_released "$DEV"

log "raw device at the reported extents equals the data"
for s in frames config odd; do
  mirror_of "$DEV" $s "$WORK/$s.disk"
  cmp "$WORK/$s.bin" "$WORK/$s.disk" || die "raw mirror of $s differs"
done
# The status CRC32C equals the data's.
crc=$(slice_field "$DEV" frames crc32c_hex)
[[ ${#crc} == 8 ]] || die "crc32c_hex"

log "remount with restore=on_mount into a fresh zeroed region"
"$PCIMIRROR" mount "$DEV" "$MNT" -o "restore=on_mount,file=$SHM.fresh,size=128M"
for s in frames config odd; do
  cmp "$WORK/$s.bin" "$MNT/$s" || die "restored $s differs through the mount"
done
log "unmount with fusermount3 -u"
fusermount3 -u "$MNT"
wait_released "$DEV"
# Bytes of the fresh region outside every slice stay zero.
[[ $(od -An -tx1 -j $((72 * 1048576)) -N 16 "$SHM.fresh" | tr -d ' \n') == 00000000000000000000000000000000 ]] \
  || die "restore wrote outside the slices"
log "restore refuses a damaged mirror and leaves memory untouched"
start=$(slice_field "$DEV" config 'extents[0].start_sector')
printf '\xff\x00\xff' | dd of="$DEV" bs=1 seek=$((start * 512 + 12345)) conv=notrunc status=none
sync
head -c $((128 * 1048576)) /dev/zero | tr '\0' '\125' >"$SHM.marked"
before=$(md5sum <"$SHM.marked")
if out=$("$PCIMIRROR" restore "$DEV" --memory "file=$SHM.marked" config 2>&1); then
  die "restore of a damaged mirror succeeded"
fi
grep -q "slice 'config'.*damaged" <<<"$out" || die "message: $out"
[[ $(md5sum <"$SHM.marked") == "$before" ]] || die "refused restore changed device memory"
"$PCIMIRROR" restore "$DEV" --memory "file=$SHM.marked" frames | grep -q "restored frames" \
  || die "an intact slice did not restore"
echo "PASS roundtrip"
