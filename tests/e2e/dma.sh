#!/usr/bin/env bash
# DMA regions (issue 14, item 3, host tests): a regular file stands in for
# an XDMA board's card memory, the SAME file as c2h and h2c, so what h2c
# writes at a card address c2h reads back there, at a non-zero card_offset.
# format, mount, dd, cp, sync and restore exactly (cmp against the card
# bytes), with aligned and odd slices, on 512- and 4096-byte-sector loop
# devices. Then EIO mid-transfer: the c2h stand-in is the same file served
# by pcimirror-unreadable-fs, which fails reads of listed ranges: the sync
# fails with EIO naming the channel and the card address, nothing is
# committed (metadata generation, slice generation and `log` unchanged), a
# FUSE read of the range fails with EIO, and the daemon keeps serving. A
# missing channel at mount is a clear error; a failing h2c fails restore
# with its errno, without falling back to an older mirror. `devices` lists
# channel pairs (PCIMIRROR_DEV_DIR stands in for /dev).
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
command -v getfattr >/dev/null || skip "no getfattr (apt-get install attr)"
UFS=${PCIMIRROR_UNREADABLE_FS:-}
[[ -x $UFS ]] || skip "set PCIMIRROR_UNREADABLE_FS to the pcimirror-unreadable-fs helper"

CARD="$WORK/card.mem"
CARD_OFFSET=$((0x100000))  # the region starts 1 MiB into card memory
truncate -s 20M "$CARD"
SPEC="c2h=$CARD,h2c=$CARD,card_offset=0x100000,size=16M"
# Slices: page-aligned a and b, odd offset and length for odd.
ODD_OFF=4206593 ODD_LEN=1000001
SLICES=(--slice a:0:4M --slice odd:$ODD_OFF:$ODD_LEN --slice b:8M:4M)

# card_bytes OFFSET LENGTH OUT: the stand-in's bytes of region bytes
# [OFFSET, OFFSET + LENGTH).
card_bytes() {
  dd if="$CARD" of="$3" bs=1M skip=$((CARD_OFFSET + $1)) count="$2" \
    iflag=skip_bytes,count_bytes status=none
}
expect_card() {  # SLICE_OFFSET FILE WHAT
  card_bytes "$1" "$(stat -c %s "$2")" "$WORK/card.cut"
  cmp "$WORK/card.cut" "$2" || die "$3: the card bytes differ"
}
new_loop4k() {
  local img
  img=$(mktemp "$WORK/disk.XXXXXX.img")
  truncate -s "$1" "$img"
  losetup --find --show --direct-io=on --sector-size 4096 "$img" ||
    skip "losetup --sector-size 4096 failed"
}
gen_of() { "$PCIMIRROR" status "$1" --json | jq -r --arg n "$2" '.slices[] | select(.name==$n) | .generation'; }
meta_gen() { "$PCIMIRROR" status "$1" --json | jq -r .metadata_generation; }

# The whole job on one device: format, dd/cp through the mount, sync,
# status path dma, the raw mirror, restore over clobbered card memory.
roundtrip() {
  local dev=$1 what=$2 mnt
  log "$what: format and mount a DMA region at card offset 1 MiB"
  : >"$CARD"; truncate -s 20M "$CARD"
  "$PCIMIRROR" format "$dev" --memory "$SPEC" "${SLICES[@]}" >/dev/null
  mnt=$(new_mountpoint "mnt-$what")
  "$PCIMIRROR" mount "$dev" "$mnt" -o mirror_on_close=off
  random_file "$WORK/a.bin" 4
  random_file "$WORK/b.bin" 4
  head -c "$ODD_LEN" /dev/urandom >"$WORK/odd.bin"
  log "$what: dd and cp write card memory through h2c at the card offset"
  dd if="$WORK/a.bin" of="$mnt/a" bs=64K conv=notrunc status=none
  cp "$WORK/b.bin" "$mnt/b"
  dd if="$WORK/odd.bin" of="$mnt/odd" bs=4093 conv=notrunc status=none
  expect_card 0 "$WORK/a.bin" "$what a"
  expect_card $((8 << 20)) "$WORK/b.bin" "$what b"
  expect_card "$ODD_OFF" "$WORK/odd.bin" "$what odd"
  log "$what: reads through the mount come from c2h"
  cmp "$WORK/a.bin" "$mnt/a" || die "$what: read of a differs"
  cmp "$WORK/odd.bin" "$mnt/odd" || die "$what: read of odd differs"
  # Odd reads: unaligned offset and length (the staging path).
  dd if="$mnt/odd" of="$WORK/odd.part" bs=1 skip=777 count=5000 status=none
  cmp "$WORK/odd.part" <(tail -c +778 "$WORK/odd.bin" | head -c 5000) || die "$what: odd partial read"
  log "$what: sync mirrors every slice, path dma"
  "$PCIMIRROR" sync "$mnt" >/dev/null
  for s in a b odd; do
    [[ $(gen_of "$mnt" $s) == 1 ]] || die "$what: $s not mirrored"
    [[ $(slice_field "$mnt" $s path) == dma ]] || die "$what: $s path is $(slice_field "$mnt" $s path)"
  done
  [[ $(getfattr --only-values -n user.pcimirror.path "$mnt/odd") == dma ]] || die "$what: xattr path"
  "$PCIMIRROR" status "$mnt" | grep -q " dma " || die "$what: status text lacks path dma: $("$PCIMIRROR" status "$mnt")"
  fusermount3 -u "$mnt"; wait_released "$dev"
  for s in a b odd; do
    mirror_of "$dev" $s "$WORK/m.$s"
    cmp "$WORK/m.$s" "$WORK/$s.bin" || die "$what: raw mirror of $s differs"
  done
  log "$what: restore writes the mirrors back through h2c exactly"
  head -c 20M /dev/zero | tr '\0' '\125' >"$CARD"
  "$PCIMIRROR" restore "$dev" >/dev/null
  expect_card 0 "$WORK/a.bin" "$what restored a"
  expect_card $((8 << 20)) "$WORK/b.bin" "$what restored b"
  expect_card "$ODD_OFF" "$WORK/odd.bin" "$what restored odd"
  # Bytes outside the slices, and before the card offset, are untouched.
  head -c "$CARD_OFFSET" "$CARD" | cmp - <(head -c "$CARD_OFFSET" /dev/zero | tr '\0' '\125') ||
    die "$what: restore wrote before the card offset"
  card_bytes $((4 << 20)) 12289 "$WORK/gap"
  cmp "$WORK/gap" <(head -c 12289 /dev/zero | tr '\0' '\125') || die "$what: restore wrote between slices"
}

DEV=$(new_loop 128M)
roundtrip "$DEV" 512
DEV4K=$(new_loop4k 128M)
[[ $(blockdev --getss "$DEV4K") == 4096 ]] || skip "loop device does not report 4096-byte sectors"
roundtrip "$DEV4K" 4096

log "a missing channel at mount is a clear error"
MNT=$(new_mountpoint mnt)
if out=$("$PCIMIRROR" mount "$DEV" "$MNT" -o "c2h=$WORK/xdma7_c2h_0,h2c=$CARD,card_offset=0x100000" 2>&1); then
  die "mount with a missing c2h succeeded"
fi
echo "$out"
grep -q "cannot open the DMA card-to-host (c2h=) channel $WORK/xdma7_c2h_0: No such file or directory" <<<"$out" ||
  die "missing c2h: $out"
grep -q "modprobe xdma" <<<"$out" || die "no remedy: $out"
mountpoint -q "$MNT" && die "mounted anyway"
if out=$("$PCIMIRROR" restore "$DEV" --memory "xdma=$WORK/xdma7,size=16M,card_offset=0x100000" 2>&1); then
  die "restore with a missing xdma= succeeded"
fi
grep -q "$WORK/xdma7_c2h_0" <<<"$out" || die "restore, missing xdma: $out"

log "a failing h2c fails restore with its errno, as no damage of the mirror"
# /dev/full refuses every write (ENOSPC), as a failing board refuses with EIO.
if [[ -c /dev/full ]]; then
  if out=$("$PCIMIRROR" restore "$DEV" --memory "c2h=$CARD,h2c=/dev/full,card_offset=0x100000" 2>&1); then
    die "restore into a failing h2c succeeded"
  fi
  echo "$out"
  grep -q "DMA write to /dev/full of [0-9]* bytes at card address 0x100000 failed: No space left on device" <<<"$out" ||
    die "restore's message: $out"
  grep -q "no damage of the copy" <<<"$out" || die "restore took a device error for damage: $out"
fi

log "EIO mid-transfer from c2h: the sync fails, nothing is committed"
: >"$WORK/bad.list"
UMNT=$(new_mountpoint ufs)
"$UFS" "$CARD" "$WORK/bad.list" "$UMNT" -f &
UPID=$!
for _ in $(seq 100); do [[ -e $UMNT/disk ]] && break; sleep 0.1; done
[[ -e $UMNT/disk ]] || die "pcimirror-unreadable-fs did not mount"
dma_cleanup() {
  fusermount3 -u "$MNT" 2>/dev/null || true
  fusermount3 -u "$UMNT" 2>/dev/null || true
  kill "$UPID" 2>/dev/null || true
  cleanup
}
trap dma_cleanup EXIT
# c2h reads the served file; h2c writes the file behind it.
"$PCIMIRROR" mount "$DEV" "$MNT" -f -o "c2h=$UMNT/disk,h2c=$CARD,card_offset=0x100000,mirror_on_close=off,write_behind=off" \
  2>"$WORK/daemon.log" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "mount did not come up: $(cat "$WORK/daemon.log")"
random_file "$WORK/a2.bin" 4
dd if="$WORK/a2.bin" of="$MNT/a" bs=1M conv=notrunc status=none
gen0=$(meta_gen "$MNT")
log0=$("$PCIMIRROR" log "$MNT" --json)
[[ $(gen_of "$MNT" a) == 1 ]] || die "a's generation before the failure"
# 512 bytes at slice byte 2 MiB + 4096: card address 0x100000 + that.
bad_card=$((CARD_OFFSET + (2 << 20) + 4096))
echo "$bad_card 512" >"$WORK/bad.list"
if out=$("$PCIMIRROR" sync "$MNT" a 2>&1); then die "sync over an EIO succeeded"; fi
echo "$out"
grep -q "Input/output error" <<<"$out" || die "sync did not report EIO: $out"
grep -q "DMA read from $UMNT/disk" <<<"$out" || die "sync's message does not name the channel: $out"
grep -q "card address 0x" <<<"$out" || die "sync's message does not name the card address: $out"
[[ $(meta_gen "$MNT") == "$gen0" ]] || die "metadata generation changed"
[[ $(gen_of "$MNT" a) == 1 ]] || die "slice a's generation changed"
[[ $("$PCIMIRROR" log "$MNT" --json) == "$log0" ]] || die "pcimirror log changed"
[[ $(getfattr --only-values -n user.pcimirror.state "$MNT/a") == error ]] || die "state is not error"
"$PCIMIRROR" status "$MNT" --json | jq -r .last_sync_error | grep -q "Input/output error" ||
  die "status lacks the last sync error"
log "a FUSE read of the range fails with EIO; the rest is served"
if dd if="$MNT/a" of=/dev/null bs=4096 skip=$(((2 << 20) / 4096 + 1)) count=1 status=none 2>"$WORK/dd.err"; then
  die "a read of the failing range succeeded"
fi
grep -q "Input/output error" "$WORK/dd.err" || die "dd: $(cat "$WORK/dd.err")"
kill -0 $daemon || die "daemon gone"
cmp "$WORK/b.bin" "$MNT/b" || die "b is not served"
head -c $((2 << 20)) "$MNT/a" | cmp - <(head -c $((2 << 20)) "$WORK/a2.bin") || die "a's readable part differs"
log "the fault gone, the next sync commits"
: >"$WORK/bad.list"
"$PCIMIRROR" sync "$MNT" a >/dev/null || die "sync after the fault failed"
[[ $(gen_of "$MNT" a) == 2 ]] || die "a not committed after the fault"
[[ -z $("$PCIMIRROR" status "$MNT" --json | jq -r .last_sync_error) ]] || die "last_sync_error after a good sync"
fusermount3 -u "$MNT"
wait $daemon || die "daemon exited non-zero: $(cat "$WORK/daemon.log")"
mirror_of "$DEV" a "$WORK/m.a2"
cmp "$WORK/m.a2" "$WORK/a2.bin" || die "mirror after the fault differs"

log "devices lists XDMA channel pairs with their memory specs"
mkdir -p "$WORK/dev"
touch "$WORK/dev/xdma0_c2h_0" "$WORK/dev/xdma0_h2c_0" "$WORK/dev/xdma0_c2h_1" "$WORK/dev/xdma0_h2c_1" "$WORK/dev/xdma1_c2h_0"
if out=$(PCIMIRROR_DEV_DIR="$WORK/dev" "$PCIMIRROR" devices 2>&1); then
  grep -q "xdma=$WORK/dev/xdma0,size=SIZE" <<<"$out" || die "devices: $out"
  grep -q "c2h=$WORK/dev/xdma0_c2h_1,h2c=$WORK/dev/xdma0_h2c_1,size=SIZE" <<<"$out" || die "devices: $out"
  grep -q "xdma1" <<<"$out" && die "devices lists xdma1 without its h2c: $out"
  json=$(PCIMIRROR_DEV_DIR="$WORK/dev" "$PCIMIRROR" devices --json)
  [[ $(jq -r '[.[] | select(.kind=="xdma") | .memory_spec] | join(" ")' <<<"$json") == \
    "xdma=$WORK/dev/xdma0,size=SIZE c2h=$WORK/dev/xdma0_c2h_1,h2c=$WORK/dev/xdma0_h2c_1,size=SIZE" ]] ||
    die "devices --json: $json"
else
  grep -q "PCI" <<<"$out" || die "devices failed: $out"
  log "devices: no PCI bus here ($out); XDMA listing not checked"
fi
echo "PASS dma"
