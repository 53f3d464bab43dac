#!/usr/bin/env bash
# Mirror throughput by path against fio, on one loop device in one run:
#   fio: O_DIRECT io_uring sequential write, bs=1M, iodepth 8 and 16
#   pcimirror sync of a SIZE slice with bounce=auto (zero-copy on the
#   emulated region) and bounce=always (registered bounce pool)
# Prints medians of REPEATS runs and ratios to fio's best. Run as root.
# Usage: bench/mirror_paths.sh [PCIMIRROR] [SIZE_MIB=1024] [REPEATS=3]
set -euo pipefail
P=${1:-build/pcimirror}
P=$(realpath "$P")
SIZE=${2:-1024}
REPEATS=${3:-3}
WORK=$(mktemp -d /tmp/pcimirror-bench.XXXXXX)
SHM=/dev/shm/pcimirror-bench-$$
LOOP=
cleanup() {
  mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt" && sleep 0.5
  [[ -n $LOOP ]] && losetup -d "$LOOP"
  rm -rf "$WORK" "$SHM".*
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

truncate -s $((SIZE * 3 + 256))M "$WORK/disk.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/disk.img")
echo "device $LOOP (loop over a sparse file, direct-io=on), slice $SIZE MiB, $REPEATS repeats"

best_fio=0
for qd in 8 16; do
  runs=()
  for _ in $(seq "$REPEATS"); do
    runs+=("$(fio --name=w --filename="$LOOP" --rw=write --bs=1M --iodepth=$qd \
      --ioengine=io_uring --direct=1 --size=${SIZE}M --zero_buffers \
      --output-format=json 2>/dev/null | jq '.jobs[0].write.bw_bytes / 1e6 | floor')")
  done
  m=$(printf '%s\n' "${runs[@]}" | median)
  echo "fio write bs=1M iodepth=$qd: $m MB/s (runs: ${runs[*]})"
  ((m > best_fio)) && best_fio=$m
done

mkdir -p "$WORK/mnt"
"$P" format "$LOOP" --force --memory "file=$SHM.ram,size=${SIZE}M" --slice big:0:${SIZE}M >/dev/null
head -c $((SIZE * 1048576)) /dev/urandom >"$SHM.ram"
for mode in auto always; do
  "$P" mount "$LOOP" "$WORK/mnt" -o bounce=$mode 2>/dev/null
  runs=()
  for _ in $(seq "$REPEATS"); do
    runs+=("$("$P" sync "$WORK/mnt" big | awk '{print int($(NF-1))}')")
  done
  fusermount3 -u "$WORK/mnt"
  sleep 0.5
  path=$("$P" status "$LOOP" --json | jq -r '.slices[0].path')
  m=$(printf '%s\n' "${runs[@]}" | median)
  echo "pcimirror sync bounce=$mode ($path): $m MB/s (runs: ${runs[*]}) = $(awk -v a=$m -v b=$best_fio 'BEGIN{printf "%.2f", a/b}') x fio best"
done
