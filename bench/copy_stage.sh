#!/usr/bin/env bash
# bench/copy_stage.sh NEW_BUILD [BASE_BUILD] [REPEATS]: the copy stage
# (docs/DESIGN.md, "The copy stage") on one 1 GiB slice of a /dev/shm
# memory file, on a loop device over a sparse file. Run as root.
#
# 1. First and second sync after a mount, each mount a fresh daemon (its
#    mapping of the memory file untouched): NEW_BUILD (prefault at mount)
#    and, when given, BASE_BUILD (a build without it), alternated in each
#    repeat so both see the same weather.
# 2. Mirror (the second sync after a mount) and restore (prepass, inline)
#    MB/s of NEW_BUILD with copy_threads=1, 2, 4, and of BASE_BUILD when
#    given (no copy stage: copies inline on the ring's thread),
#    interleaved in each repeat. Restore writes into the memory file, which is allocated
#    already, so it pays no first touch of fresh memory.
# Prints every sample and the medians. Figures are pcimirror's own
# "synced ... MB/s" and "restored ... MB/s" (data write + flush; read,
# verify and copy).
set -euo pipefail
NEW=$(realpath "$1")/pcimirror
BASE=${2:+$(realpath "$2")/pcimirror}
REPEATS=${3:-5}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
GiB=1073741824
WORK=$(mktemp -d /tmp/pcimirror-copystage.XXXXXX)
SHM=/dev/shm/pcimirror-copystage-$$
LOOP=
cleanup() {
  mountpoint -q "$WORK/mnt" 2>/dev/null && fusermount3 -u "$WORK/mnt"
  sleep 0.5
  [[ -n $LOOP ]] && losetup -d "$LOOP" 2>/dev/null
  rm -rf "$WORK" "$SHM".*
}
trap cleanup EXIT
mkdir -p "$WORK/mnt"
truncate -s 4G "$WORK/disk.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/disk.img")
echo "machine: $(nproc) cores, $(uname -r); $LOOP (loop, direct-io)"
unmount_wait() {
  fusermount3 -u "$WORK/mnt"
  for _ in $(seq 600); do pgrep -f "pcimirror mount $LOOP " >/dev/null || return 0; sleep 0.1; done
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sync_mbs() { "$1" sync "$WORK/mnt" big | awk '/^synced/ {print int($(NF-1))}'; }
declare -A S

"$NEW" format "$LOOP" --force --memory "file=$SHM.ram,size=1G" --slice big:0:1G >/dev/null
head -c $GiB /dev/urandom >"$SHM.ram"

echo "== first and second sync after a mount"
for r in $(seq "$REPEATS"); do
  for b in new ${BASE:+base}; do
    bin=$NEW; [[ $b == base ]] && bin=$BASE
    "$bin" mount "$LOOP" "$WORK/mnt" 2>/dev/null
    first=$(sync_mbs "$bin"); second=$(sync_mbs "$bin")
    unmount_wait
    echo "repeat $r $b: first sync $first MB/s, second $second MB/s"
    S[${b}_first]+="$first "; S[${b}_second]+="$second "
    S[${b}_ratio]+="$(awk -v a="$first" -v b="$second" 'BEGIN {printf "%.3f", a / b}') "
  done
done
for b in new ${BASE:+base}; do
  echo "$b: first $(tr ' ' '\n' <<<"${S[${b}_first]}" | grep . | median) MB/s," \
    "second $(tr ' ' '\n' <<<"${S[${b}_second]}" | grep . | median) MB/s," \
    "first/second $(tr ' ' '\n' <<<"${S[${b}_ratio]}" | grep . | median) (median of pairs)"
done

echo "== copy_threads: mirror and restore MB/s"
# restore_mbs BIN THREADS MODE (THREADS "-": the binary's default, no option)
restore_mbs() {
  local o="restore_verify=$3"; [[ $2 != - ]] && o+=",copy_threads=$2"
  "$1" restore "$LOOP" --memory "file=$SHM.ram" -o "$o" big |
    awk '/^restored/ {print int($(NF-1))}'
}
configs="1 2 4${BASE:+ base}"
for r in $(seq "$REPEATS"); do
  for n in $configs; do
    bin=$NEW; t=$n; opt=(-o copy_threads=$n)
    [[ $n == base ]] && bin=$BASE && t=- && opt=()
    "$bin" mount "$LOOP" "$WORK/mnt" "${opt[@]}" 2>/dev/null
    sync_mbs "$bin" >/dev/null
    m=$(sync_mbs "$bin")
    unmount_wait
    p=$(restore_mbs "$bin" $t prepass); i=$(restore_mbs "$bin" $t inline)
    echo "repeat $r copy_threads=$n: mirror $m, restore prepass $p, inline $i MB/s"
    S[m$n]+="$m "; S[p$n]+="$p "; S[i$n]+="$i "
  done
done
for n in $configs; do
  echo "copy_threads=$n: mirror $(tr ' ' '\n' <<<"${S[m$n]}" | grep . | median)," \
    "restore prepass $(tr ' ' '\n' <<<"${S[p$n]}" | grep . | median)," \
    "inline $(tr ' ' '\n' <<<"${S[i$n]}" | grep . | median) MB/s (medians)"
done
