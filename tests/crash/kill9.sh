#!/usr/bin/env bash
# kill -9 (label `crash`): on a real loop device, a writer copies stamped
# data onto slices with dd (each close mirrors and commits) while the daemon
# is SIGKILLed at a random moment, PCIMIRROR_KILLS times (default 50). After
# every kill: fsck --verify is clean, and every slice restores to exactly the
# copy whose close last returned, or the one that was in flight, never older,
# never a mix. PCIMIRROR_COPIES (default 2) is format's --copies: with 3,
# every older generation that `log` lists must also restore exactly
# (checked after the last kill) and fsck --verify checks every copy.
source "$(dirname "$0")/../e2e/lib.sh"
KILLS=${PCIMIRROR_KILLS:-50}
COPIES=${PCIMIRROR_COPIES:-2}

DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
declare -A LEN=([a]=2097152 [b]=1048576 [c]=1000017)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=16M" \
  --slice a:0:2M --slice b:4M:1M --slice c:$((8 * 1048576 + 4096)):1000017 \
  --copies "$COPIES" >/dev/null
echo 0 >"$WORK/counter"
: >"$WORK/journal"

# `yes` dies of SIGPIPE when head has enough: not a failure (pipefail).
pattern() { yes "$1-$2" | head -c "${LEN[$1]}" || true; }

writer() {  # runs until killed; journals "try S G" before and "done S G" after
  local n s g
  while true; do
    for s in a b c; do
      n=$(<"$WORK/counter"); g=$((n + 1)); echo $g >"$WORK/counter"
      echo "try $s $g" >>"$WORK/journal"
      pattern $s $g | dd of="$MNT/$s" bs=1M conv=notrunc status=none 2>/dev/null || return 0
      echo "done $s $g" >>"$WORK/journal"
    done
  done
}

for k in $(seq "$KILLS"); do
  "$PCIMIRROR" mount "$DEV" "$MNT" 2>/dev/null
  pid=$(pgrep -f "pcimirror mount $DEV ")
  writer &
  wpid=$!
  sleep "0.$((RANDOM % 6))$((RANDOM % 10))"
  kill -9 "$pid"
  wait "$wpid" 2>/dev/null || true
  fusermount3 -uz "$MNT"
  wait_released "$DEV"

  out=$("$PCIMIRROR" fsck "$DEV" --verify) || die "kill $k: fsck exit $?: $out"
  rm -f "$SHM.fresh"
  "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.fresh,size=16M" >/dev/null || die "kill $k: restore failed"
  json=$("$PCIMIRROR" status "$DEV" --json)
  for s in a b c; do
    gen=$(jq -r --arg n $s '.slices[] | select(.name==$n) | .generation' <<<"$json")
    last_done=$(awk -v s=$s '$1=="done" && $2==s {g=$3} END {print g+0}' "$WORK/journal")
    if [[ $gen == 0 ]]; then
      [[ $last_done == 0 ]] || die "kill $k: slice $s lost its mirror (done $last_done)"
      continue
    fi
    off=$(jq -r --arg n $s '.slices[] | select(.name==$n) | .offset_bytes' <<<"$json")
    dd if="$SHM.fresh" bs=1M skip=$off count=${LEN[$s]} iflag=skip_bytes,count_bytes status=none >"$WORK/got"
    stamp=$(head -1 "$WORK/got")
    g=${stamp#$s-}
    grep -q "^try $s $g$" "$WORK/journal" || die "kill $k: slice $s holds '$stamp', never written"
    ((g >= last_done)) || die "kill $k: slice $s restored copy $g, older than the confirmed $last_done"
    cmp -s "$WORK/got" <(pattern $s $g) || die "kill $k: slice $s copy $g is a mix"
  done
done
# Every generation that log lists restores exactly, chosen by --generation.
checked=0
for s in a b c; do
  off=$("$PCIMIRROR" status "$DEV" --json | jq -r --arg n $s '.slices[] | select(.name==$n) | .offset_bytes')
  gens=$("$PCIMIRROR" log "$DEV" $s --json | jq -r '.slices[0].generations[].generation')
  (($(wc -w <<<"$gens") <= COPIES)) || die "slice $s lists more generations than $COPIES copies: $gens"
  n=$(wc -w <<<"$gens"); i=0
  for G in $gens; do
    i=$((i + 1))
    rm -f "$SHM.fresh"
    if ! "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.fresh,size=16M" --generation "$G" $s >/dev/null 2>"$WORK/err"; then
      # The oldest copy is the one the next sync (and write-behind) writes:
      # the last kill may have left it part-written (FORMAT.md §7).
      ((i == n && n == COPIES)) && grep -q "CRC32C" "$WORK/err" \
        || die "slice $s generation $G does not restore: $(cat "$WORK/err")"
      echo "slice $s generation $G: the oldest, overwritten by the interrupted sync"
      continue
    fi
    dd if="$SHM.fresh" bs=1M skip=$off count=${LEN[$s]} iflag=skip_bytes,count_bytes status=none >"$WORK/got"
    stamp=$(head -1 "$WORK/got"); g=${stamp#$s-}
    grep -q "^try $s $g$" "$WORK/journal" || die "slice $s generation $G holds '$stamp', never written"
    cmp -s "$WORK/got" <(pattern $s $g) || die "slice $s generation $G (stamp $g) is a mix"
    checked=$((checked + 1))
  done
done
echo "generations listed by log and restored exactly: $checked (--copies $COPIES)"
tries=$(grep -c '^try' "$WORK/journal" || true); dones=$(grep -c '^done' "$WORK/journal" || true)
((dones > KILLS)) || die "the writer confirmed only $dones copies: the kills did not interrupt real work"
echo "kills: $KILLS, each followed by a clean fsck --verify and exact restores of 3 slices"
echo "copies confirmed: $dones, interrupted by a kill: $((tries - dones))"
echo "PASS kill9"
