#!/usr/bin/env bash
# Soak: for SECONDS (default 60), two fio jobs write random 64 KiB blocks
# with verify=crc32c through the mount (each block read back and checked),
# while four other slices, and the fio slices too, are synced in a loop.
# Requires 0 verify errors, a clean fsck --verify, and 0 lost mirrors: every
# slice's generation counts every sync that returned. Run as root.
# Usage: bench/soak.sh [PCIMIRROR] [SECONDS]
set -euo pipefail
P=$(realpath "${1:-build/pcimirror}")
SECS=${2:-60}
WORK=$(mktemp -d /tmp/pcimirror-soak.XXXXXX)
SHM=/dev/shm/pcimirror-soak-$$
LOOP=
cleanup() {
  mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt" && sleep 1
  [[ -n $LOOP ]] && losetup -d "$LOOP"
  rm -rf "$WORK" "$SHM".*
}
trap cleanup EXIT
# Whatever fio leaves in its working directory (verify state files such as
# local-f1-0-verify.state) goes to $WORK, not into the caller's tree.
cd "$WORK"
truncate -s 3G "$WORK/disk.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/disk.img")
mkdir "$WORK/mnt"
"$P" format "$LOOP" --memory "file=$SHM.ram,size=1G" --slice f1:0:256M --slice f2:256M:256M \
  --slice s3:512M:64M --slice s4:576M:64M --slice s5:640M:64M --slice s6:704M:64M >/dev/null
"$P" mount "$LOOP" "$WORK/mnt" 2>/dev/null
echo "soak: $SECS s on $LOOP"

# Global options first: fio applies options after --name to that job only.
fio --rw=randwrite --bs=64k --size=256M --ioengine=psync --direct=1 \
  --verify=crc32c --verify_backlog=256 --verify_fatal=1 --fallocate=none \
  --time_based --runtime="$SECS" --output-format=json \
  --name=f1 --filename="$WORK/mnt/f1" --name=f2 --filename="$WORK/mnt/f2" \
  >"$WORK/fio.out" 2>"$WORK/fio.err" &
fio_pid=$!
declare -A syncs=([f1]=0 [f2]=0 [s3]=0 [s4]=0 [s5]=0 [s6]=0)
end=$(($(date +%s) + SECS))
while (($(date +%s) < end)); do
  for s in s3 s4 s5 s6 f1 f2; do
    "$P" sync "$WORK/mnt" $s >/dev/null && syncs[$s]=$((syncs[$s] + 1))
  done
done
fio_rc=0; wait $fio_pid || fio_rc=$?
sed -n '/^{/,$p' "$WORK/fio.out" >"$WORK/fio.json"  # drop any preamble
fusermount3 -u "$WORK/mnt"
for _ in $(seq 100); do pgrep -f "pcimirror mount $LOOP " >/dev/null || break; sleep 0.1; done

verify_errors=$(jq '[.jobs[].error] | add' "$WORK/fio.json" 2>/dev/null || echo "?")
written=$(jq '[.jobs[].write.io_bytes] | add' "$WORK/fio.json")
read_back=$(jq '[.jobs[].read.io_bytes] | add' "$WORK/fio.json")
wbw=$(jq '[.jobs[].write.bw_bytes] | add / 1e6 | floor' "$WORK/fio.json")
echo "fio: exit $fio_rc, errors $verify_errors, written $((written / 1048576)) MiB ($wbw MB/s), verified by read-back $((read_back / 1048576)) MiB"
fsck_out=$("$P" fsck "$LOOP" --verify) || { echo "$fsck_out"; echo "FAIL: fsck"; exit 1; }
echo "fsck --verify: clean"
json=$("$P" status "$LOOP" --json)
lost=0 total=0 mirrored=0
for s in s3 s4 s5 s6 f1 f2; do
  gen=$(jq -r --arg n $s '.slices[] | select(.name==$n) | .generation' <<<"$json")
  len=$(jq -r --arg n $s '.slices[] | select(.name==$n) | .length_bytes' <<<"$json")
  total=$((total + syncs[$s])); mirrored=$((mirrored + syncs[$s] * len / 1048576))
  # s3..s6 change only by sync; f1/f2 also mirror at fio's closes.
  if ((gen < syncs[$s])); then lost=$((lost + syncs[$s] - gen)); fi
  echo "  slice $s: ${syncs[$s]} syncs, generation $gen"
done
echo "syncs: $total ($mirrored MiB mirrored), lost mirrors: $lost"
((fio_rc == 0 && verify_errors == 0 && lost == 0)) || { cat "$WORK/fio.err"; echo "FAIL"; exit 1; }
echo "PASS soak"
