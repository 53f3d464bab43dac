#!/usr/bin/env bash
# Write-behind on a real mount: while a file stays open, the chunks its
# writes complete reach the next mirror copy on the raw device, with nothing
# committed; `pcimirror sync` meanwhile commits them; a chunk written again
# afterwards is rewritten at close, so the mirror at close equals memory.
# With write_behind=off nothing reaches the disk before close.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"

DEV=$(new_loop 256M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=64M" --slice big:0:32M >/dev/null
random_file "$WORK/first.bin" 16
head -c 65536 /dev/urandom >"$WORK/patch.bin"

# copy_bytes COPY LENGTH OUT: the first LENGTH bytes of mirror copy COPY of
# slice big, read from the raw device at the extents status reports.
copy_bytes() {
  local json start sectors
  json=$("$PCIMIRROR" status "$DEV" --json)
  : >"$3"
  while read -r start sectors; do
    dd if="$DEV" bs=1M skip=$((start * 512)) count=$((sectors * 512)) iflag=direct,skip_bytes,count_bytes status=none >>"$3"
  done < <(jq -r ".slices[0].copies[$1].extents[] | \"\(.start_sector) \(.sectors)\"" <<<"$json")
  truncate -s "$2" "$3"
}

# writer: writes first.bin from offset 0 in 1 MiB writes, says ready, waits
# for go, writes patch.bin at 3 MiB + 100 (inside a chunk written before),
# and closes.
start_writer() {
  rm -f "$WORK/ready" "$WORK/go"
  python3 - "$MNT/big" "$WORK" <<'PY' &
import os, sys, time
path, work = sys.argv[1:]
fd = os.open(path, os.O_WRONLY)
data = open(work + "/first.bin", "rb").read()
for off in range(0, len(data), 1 << 20):
    os.write(fd, data[off:off + (1 << 20)])
open(work + "/ready", "w").close()
while not os.path.exists(work + "/go"):
    time.sleep(0.05)
os.pwrite(fd, open(work + "/patch.bin", "rb").read(), 3 * (1 << 20) + 100)
os.close(fd)
PY
  WRITER=$!
  for _ in $(seq 200); do [[ -e $WORK/ready ]] && return; sleep 0.05; done
  die "writer did not get going"
}

log "mount (write_behind on by default); a first mirror fills copy 0"
"$PCIMIRROR" mount "$DEV" "$MNT"
dd if=/dev/zero of="$MNT/big" bs=1M count=32 status=none
[[ $(slice_field "$DEV" big generation) == 1 ]] || die "first mirror missing"
[[ $(slice_field "$DEV" big current_copy) == 0 ]] || die "first mirror not in copy 0"

log "an open file's completed chunks reach copy 1 before close, uncommitted"
start_writer
ok=
for _ in $(seq 100); do
  copy_bytes 1 16777216 "$WORK/copy1"
  if cmp -s "$WORK/first.bin" "$WORK/copy1"; then ok=1; break; fi
  sleep 0.1
done
[[ -n $ok ]] || die "write-behind did not write the completed chunks into copy 1"
[[ $(slice_field "$DEV" big generation) == 1 ]] || die "write-behind committed before close"

log "pcimirror sync while the file is open commits what was written"
"$PCIMIRROR" sync "$MNT" big >/dev/null
[[ $(slice_field "$DEV" big generation) == 2 ]] || die "sync did not commit"
mirror_of "$DEV" big "$WORK/m2"
head -c 16777216 "$WORK/m2" | cmp -s - "$WORK/first.bin" || die "mirror after sync differs"

log "a chunk written again is rewritten at close"
touch "$WORK/go"
wait "$WRITER" || die "writer failed"
[[ $(slice_field "$DEV" big generation) == 3 ]] || die "close did not commit"
cp "$MNT/big" "$WORK/expect"
dd if="$WORK/patch.bin" of="$WORK/expect" bs=1 seek=$((3 * 1048576 + 100)) conv=notrunc status=none
cmp -s "$WORK/expect" "$MNT/big" || die "memory differs from what was written"
mirror_of "$DEV" big "$WORK/m3"
cmp "$WORK/expect" "$WORK/m3" || die "mirror at close differs from memory"
"$PCIMIRROR" fsck "$DEV" --verify >/dev/null || die "fsck --verify failed"
fusermount3 -u "$MNT"
wait_released "$DEV"

log "write_behind=off: nothing reaches the disk before close"
"$PCIMIRROR" mount "$DEV" "$MNT" -o write_behind=off
next=$((1 - $(slice_field "$DEV" big current_copy)))
copy_bytes $next 16777216 "$WORK/before"
random_file "$WORK/first.bin" 16
start_writer
sleep 1
copy_bytes $next 16777216 "$WORK/during"
cmp -s "$WORK/before" "$WORK/during" || die "write_behind=off wrote before close"
touch "$WORK/go"
wait "$WRITER" || die "writer failed"
mirror_of "$DEV" big "$WORK/m4"
cmp -s "$MNT/big" "$WORK/m4" || die "mirror at close differs (write_behind=off)"
fusermount3 -u "$MNT"
wait_released "$DEV"
echo "PASS"
