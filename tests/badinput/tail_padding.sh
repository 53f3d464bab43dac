#!/usr/bin/env bash
# Issue 12 item 10 (docs/FORMAT.md §4.1 "Tail padding"): on a 512-byte-sector
# device a mirror is written with zeros up to the next logical block only;
# the rest of its last allocation block keeps what the device held, and
# verify and restore ignore it. Old volumes are laid out this way, so the
# spec was corrected; this pins both halves of the rule.
source "$(dirname "$0")/../e2e/lib.sh"
P=$PCIMIRROR

IMG=$WORK/pad.img
# Fill the image with 0xAA before format: format writes only superblocks
# and slots, so the data area keeps the pattern until a mirror lands on it.
head -c 32M /dev/zero | tr '\0' '\252' >"$IMG"
DEV=$(losetup --find --show --direct-io=on --sector-size 512 "$IMG") || skip "losetup failed"
[[ $(blockdev --getss "$DEV") == 512 ]] || skip "no 512-byte-sector loop device"
MNT=$(new_mountpoint mnt)
S="file=$SHM.ram,size=8M"
"$P" format "$DEV" --memory "$S" --slice a:0:1000 --slice b:1M:1M >/dev/null

"$P" mount "$DEV" "$MNT"
head -c 1000 /dev/urandom >"$WORK/data"   # slice a is 1000 bytes: 2 logical blocks
cp "$WORK/data" "$MNT/a"
fusermount3 -u "$MNT"; wait_released "$DEV"

json=$("$P" status "$DEV" --json)
read -r start sectors < <(jq -r '.slices[] | select(.name=="a") | .extents[0] | "\(.start_sector) \(.sectors)"' <<<"$json")
[[ -n $start && $sectors -ge 8 ]] || die "no extent for slice a: $json"
dd if="$DEV" bs=4096 skip=$((start * 512)) count=4096 iflag=direct,skip_bytes,count_bytes status=none >"$WORK/block"
cmp -n 1000 "$WORK/block" "$WORK/data" || die "mirror bytes differ from the slice"
# [1000, 1024): zeros up to the next logical block.
[[ $(dd if="$WORK/block" bs=1 skip=1000 count=24 status=none | tr -d '\0' | wc -c) == 0 ]] ||
  die "bytes 1000-1023 are not zero"
# [1024, 4096): not written, the old 0xAA pattern (unspecified per §4.1).
[[ $(dd if="$WORK/block" bs=1 skip=1024 count=3072 status=none | tr -d '\252' | wc -c) == 0 ]] ||
  die "bytes 1024-4095 were written; FORMAT.md §4.1 says they keep old contents"
echo "ok: zeros to the logical block, the rest of the allocation block untouched"

# Readers ignore the padding: fsck passes, restore into fresh memory
# verifies the CRCs and brings back exactly the 1000 bytes.
"$P" fsck "$DEV" >/dev/null || die "fsck fails on a volume with unspecified tail padding"
"$P" restore "$DEV" --memory "file=$SHM.r,size=8M" a >/dev/null ||
  die "restore fails on a volume with unspecified tail padding"
cmp -n 1000 "$SHM.r" "$WORK/data" || die "restored bytes differ"
echo "ok: fsck and restore ignore the padding"
echo "PASS tail_padding"
