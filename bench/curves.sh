#!/usr/bin/env bash
# Scaling curves into docs/: mirror throughput against io_size and
# queue_depth (1 GiB slice, bounce=auto), and mirror time against slice size
# from 1 MiB to 4 GiB. Writes docs/curve-*.dat and, with gnuplot, PNGs.
# Usage: bench/curves.sh [BUILD_DIR]
set -euo pipefail
BUILD=$(realpath "${1:-build}")
P=$BUILD/pcimirror
DOCS=$(cd "$(dirname "$0")/../docs" && pwd)
WORK=$(mktemp -d /tmp/pcimirror-curves.XXXXXX)
SHM=/dev/shm/pcimirror-curves-$$
LOOP=
cleanup() {
  mountpoint -q "$WORK/mnt" 2>/dev/null && fusermount3 -u "$WORK/mnt" && sleep 0.5
  [[ -n $LOOP ]] && losetup -d "$LOOP" 2>/dev/null
  rm -rf "$WORK" "$SHM".*
}
trap cleanup EXIT
cd "$WORK"  # side files of the tools stay in the work directory
mkdir "$WORK/mnt"
truncate -s 10G "$WORK/disk.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/disk.img")
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sync_mbs() { "$P" sync "$WORK/mnt" big | awk '/^synced/ {print $(NF-1)}'; }

"$P" format "$LOOP" --force --memory "file=$SHM.ram,size=1G" --slice big:0:1G >/dev/null
head -c 1G /dev/urandom >"$SHM.ram"
echo "# io_size_KiB queue_depth MB/s" >"$DOCS/curve-iosize-qd.dat"
for io in 64K 256K 1M 4M; do
  for qd in 1 4 16 32; do
    bufs=$(( qd > 8 ? qd : 8 ))
    "$P" mount "$LOOP" "$WORK/mnt" -o io_size=$io,queue_depth=$qd,bounce_buffers=$bufs 2>/dev/null
    v=$(for _ in 1 2 3; do sync_mbs; done | median)
    fusermount3 -u "$WORK/mnt"; sleep 0.2
    echo "$(( $(numfmt --from=iec $io) / 1024 )) $qd $v" | tee -a "$DOCS/curve-iosize-qd.dat"
  done
  printf '\n\n' >>"$DOCS/curve-iosize-qd.dat"  # a gnuplot index block
done

echo "# slice_MiB seconds MB/s" >"$DOCS/curve-size.dat"
for mib in 1 4 16 64 256 1024 4096; do
  rm -f "$SHM.ram"
  "$P" format "$LOOP" --force --memory "file=$SHM.ram,size=${mib}M" --slice big:0:${mib}M >/dev/null
  head -c $((mib * 1048576)) /dev/zero | tr '\0' 'x' >"$SHM.ram"
  "$P" mount "$LOOP" "$WORK/mnt" 2>/dev/null
  v=$(for _ in 1 2 3; do "$P" sync "$WORK/mnt" big | awk '/^synced/ {print $(NF-3)}'; done | median)
  fusermount3 -u "$WORK/mnt"; sleep 0.2
  echo "$mib $v $(awk -v m=$mib -v s=$v 'BEGIN {printf "%.0f", m * 1048576 / s / 1e6}')" | tee -a "$DOCS/curve-size.dat"
done

if command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$DOCS/curve-iosize-qd.png"
set title "pcimirror sync of 1 GiB (bounce=auto): throughput by io_size and queue_depth"
set xlabel "queue_depth"; set ylabel "MB/s"; set logscale x 2; set key left top; set grid
f = "$DOCS/curve-iosize-qd.dat"
plot f index 0 using 2:3 with linespoints title "io_size 64 KiB", \
     f index 1 using 2:3 with linespoints title "io_size 256 KiB", \
     f index 2 using 2:3 with linespoints title "io_size 1 MiB", \
     f index 3 using 2:3 with linespoints title "io_size 4 MiB"
GP
  gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$DOCS/curve-size.png"
set title "pcimirror sync time by slice size (bounce=auto, io_size 1M, queue_depth 16)"
set xlabel "slice size (MiB)"; set ylabel "seconds"; set y2label "MB/s"
set logscale x 2; set logscale y; set ytics nomirror; set y2tics; set grid; set key left top
plot "$DOCS/curve-size.dat" using 1:2 with linespoints title "sync time (s)", \
     "" using 1:3 axes x1y2 with linespoints title "MB/s"
GP
  echo "plots: $DOCS/curve-iosize-qd.png $DOCS/curve-size.png"
fi
