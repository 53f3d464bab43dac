#!/usr/bin/env bash
# A volume formatted by the release before stable slice IDs (metadata slot
# version 1, docs/FORMAT.md §9) on a real loop device:
#  - it reads as it is: status, fsck --verify and restore, with no write;
#  - a read-only mount serves it without upgrading it, and a refused
#    writable mount (memory missing or too small) leaves it as it was;
#  - the first writable mount upgrades it in one commit (a version-2 slot;
#    the superblock is not rewritten), logs it, and serves the same slices
#    with IDs 1..n in table order (inode = ID + 1);
#  - IDs of removed slices are never given again, across unmounts;
#  - the upgraded volume passes fsck --verify, and every slice restores to
#    the bytes the old release mirrored (tests/fixtures/*.sha256).
# The fixture was made by tests/fixtures/make_v1_fixture.sh with the build
# of commit 342e621.
source "$(dirname "$0")/lib.sh"
command -v xz >/dev/null || skip "no xz (apt-get install xz-utils)"
P=$PCIMIRROR
FX=$(cd "$(dirname "$0")/../fixtures" && pwd)

img=$WORK/v1.img
xz -dc "$FX/v1-volume.img.xz" >"$img"
DEV=$(losetup --find --show --direct-io=on "$img") || skip "losetup failed"
MNT=$(new_mountpoint mnt)
sb_incompat() {  # the primary (or backup) superblock's incompat_features
  od -An -t u8 -j $(($1 + 16)) -N 8 "$DEV" | tr -d ' '
}
backup_off=$((($(blockdev --getsize64 "$DEV") / 4096 - 1) * 4096))
check_restore() {  # restore into a fresh region; compare with the fixture
  local region=$SHM.$1
  "$P" restore "$DEV" --memory "file=$region,size=2M" >/dev/null
  while read -r sum name; do
    local off len
    off=$(slice_field "$DEV" "$name" offset_bytes)
    len=$(slice_field "$DEV" "$name" length_bytes)
    got=$(dd if="$region" iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none | sha256sum | cut -d' ' -f1)
    [[ $got == "$sum" ]] || die "$1: slice $name restored wrong: $got, expected $sum"
  done <"$FX/v1-volume.expected.sha256"
}
before=$(md5sum <"$img")

log "the old volume reads as it is: status, fsck --verify, restore; nothing written"
json=$("$P" status "$DEV" --json)
[[ $(jq .metadata_slot_version <<<"$json") == 1 ]] || die "not a version-1 slot: $json"
[[ $(jq .slice_ids_feature <<<"$json") == false ]] || die "slice_ids set on the fixture"
[[ $(jq -c '[.slices[] | [.id, .name]]' <<<"$json") == '[[1,"a"],[2,"bee"],[3,"c"]]' ]] ||
  die "IDs of a version-1 table are not 1..n in table order: $(jq -c '[.slices[] | [.id, .name]]' <<<"$json")"
"$P" status "$DEV" | grep -q "formatted before slice IDs" || die "status does not say the volume predates slice IDs"
"$P" fsck --verify "$DEV" >/dev/null || die "fsck --verify fails on the old volume"
check_restore r1
[[ $(md5sum <"$img") == "$before" ]] || die "reading the old volume wrote to it"

log "a refused writable mount leaves it as it was (no upgrade)"
# Memory that cannot be opened, and a mirror that does not fit the memory
# given: both are refused after the volume was opened.
for bad in "file=$WORK/no/such/dir/region" "file=$SHM.small,size=64K"; do
  if "$P" mount "$DEV" "$MNT" -o "$bad" 2>"$WORK/err"; then die "mount with $bad succeeded"; fi
  wait_released "$DEV"
  ! grep -q "upgraded" "$WORK/err" || die "a refused mount upgraded the volume: $(cat "$WORK/err")"
  [[ $(md5sum <"$img") == "$before" ]] || die "a refused mount ($bad) changed the volume"
done

log "fsck --repair of an old volume upgrades it with its commit, and says so"
xz -dc "$FX/v1-volume.img.xz" >"$WORK/fsck.img"
# Slot 1 (the stale one: generation 6 is in slot 0) gets a bad header CRC.
printf '\377' | dd of="$WORK/fsck.img" bs=1 seek=$((1114112 + 20)) conv=notrunc status=none
set +e
out=$("$P" fsck "$WORK/fsck.img" --repair 2>&1)
rc=$?
set -e
[[ $rc == 1 ]] || die "fsck --repair exit $rc: $out"
grep -q "upgraded the volume to the current metadata format" <<<"$out" || die "fsck did not say it upgraded: $out"
[[ $("$P" status "$WORK/fsck.img" --json | jq .metadata_slot_version) == 3 ]] || die "fsck's commit was not version 3"

log "a read-only mount serves it without upgrading it"
"$P" mount "$DEV" "$MNT" -o ro,file=$SHM.r1
[[ $(ls "$MNT" | tr '\n' ' ') == "a bee c " ]] || die "ro mount lists $(ls "$MNT")"
fusermount3 -u "$MNT"
wait_released "$DEV"
[[ $(md5sum <"$img") == "$before" ]] || die "a read-only mount wrote to the volume"

log "the first writable mount upgrades it in one commit"
gen0=$(jq .metadata_generation <<<"$json")
"$P" mount "$DEV" "$MNT" -f -o file=$SHM.r1 2>"$WORK/daemon.log" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "mount did not come up: $(cat "$WORK/daemon.log")"
grep -q "upgraded the volume on $DEV to stable slice IDs and the canary record (metadata slot version 1 to 3" "$WORK/daemon.log" ||
  die "no upgrade line in the daemon's log: $(cat "$WORK/daemon.log")"
json=$("$P" status "$MNT" --json)
[[ $(jq .metadata_slot_version <<<"$json") == 3 ]] || die "not upgraded: $(jq -c .metadata_slot_version <<<"$json")"
# The upgrade is one commit; the mount's mounted mark is the second.
[[ $(jq .metadata_generation <<<"$json") == $((gen0 + 2)) ]] || die "the upgrade was not exactly one commit (before the mounted mark)"
[[ $(sb_incompat 0) == 0 && $(sb_incompat "$backup_off") == 0 ]] ||
  die "the upgrade rewrote a superblock: incompat $(sb_incompat 0) $(sb_incompat "$backup_off")"
for s in a:2 bee:3 c:4; do
  [[ $(stat -c %i "$MNT/${s%%:*}") == "${s#*:}" ]] || die "inode of ${s%%:*} is $(stat -c %i "$MNT/${s%%:*}"), not ${s#*:}"
done
while read -r sum name; do
  [[ $(sha256sum <"$MNT/$name" | cut -d' ' -f1) == "$sum" ]] || die "slice $name reads wrong after the upgrade"
done <"$FX/v1-volume.expected.sha256"

log "IDs are never given again: add, rm, add, across an unmount"
"$P" slice add "$MNT" n1:1600K:4K >/dev/null
[[ $(slice_field "$DEV" n1 id) == 4 ]] || die "n1 got ID $(slice_field "$DEV" n1 id), not 4"
"$P" slice rm "$MNT" n1 >/dev/null
"$P" slice rename "$MNT" bee b >/dev/null
[[ $(slice_field "$DEV" b id) == 2 && $(stat -c %i "$MNT/b") == 3 ]] || die "rename changed the slice's ID or inode"
"$P" umount "$MNT" >/dev/null || die "umount failed"
wait "$daemon" || die "daemon exit status $?"
"$P" slice add "$DEV" n2:1600K:4K >/dev/null
[[ $(slice_field "$DEV" n2 id) == 5 ]] || die "n2 got ID $(slice_field "$DEV" n2 id), not 5 (ID 4 reused?)"
"$P" slice rm "$DEV" n2 >/dev/null
"$P" slice rename "$DEV" b bee >/dev/null

log "the upgraded volume verifies and restores the old release's mirrors"
"$P" fsck --verify "$DEV" >/dev/null || die "fsck --verify fails after the upgrade"
check_restore r2
log "a second mount does not upgrade again"
"$P" mount "$DEV" "$MNT" -f -o file=$SHM.r2 2>"$WORK/daemon2.log" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "second mount did not come up: $(cat "$WORK/daemon2.log")"
! grep -q "upgraded" "$WORK/daemon2.log" || die "upgraded twice"
"$P" umount "$MNT" >/dev/null
wait "$daemon" || die "daemon exit status $?"
echo "PASS"
