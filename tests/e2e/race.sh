#!/usr/bin/env bash
# Black-box race test on a real mount (issue 12). Six slices of an emulated
# region (one at an odd offset with a length that is not a multiple of
# 1 MiB; two renamed back and forth), write-behind on, mirror_on_close=sync
# (the defaults) and interval=200ms (RACE_INTERVAL; 100ms, the minimum,
# keeps the daemon mirroring all the time and starves the other operations).
# For RACE_SECONDS (default 15; 10 in a sanitizer build) these run at once:
#   - two dd writers (conv=notrunc,nocreat) at random offsets of random slices;
#   - a cp writer onto the slices that keep their names (cp truncates: the
#     O_TRUNC zero-fill, then the writes);
#   - a python3 writer through an fd and its os.dup() copy: pwrite through
#     both, close one, maybe write through the other, close it, in random
#     order, with an fsync on every 4th open;
#   - chmod of any slice (a metadata commit) and truncate -s of a slice
#     that keeps its name (a zero-fill from the new size, mirrored);
#   - a reader: md5sum, stat (the size is always the slice's length),
#     getfattr of the user.pcimirror.* xattrs (the state is never "error"),
#     and ls (the root lists each renamed slice under exactly one name);
#   - `pcimirror sync MNT`, `pcimirror sync MNT NAME` and a group sync;
#   - `pcimirror slice rename MNT` of the two renamed slices, back and forth;
#   - `pcimirror slice add MNT tmpN:OFFSET:LENGTH` in the free window after
#     the slices, a dd write into it, sometimes `pcimirror sync MNT tmpN`,
#     then `pcimirror slice rm MNT tmpN` (N cycles through 0..2, so a name
#     comes back at another window);
#   - the daemon's interval ticks and write-behind.
# Each loop cycles through its kinds of operation and runs each at least
# once, however slow the machine (a sanitizer build) is.
# Expected failures, and only these: an open (or stat, getfattr, md5sum,
# chmod, `pcimirror sync MNT NAME`) by a name of a slice being renamed may fail
# with ENOENT ("No such file or directory"), since the name may be gone by
# then (chmod(1) may call that a dangling symlink: its stat found nothing,
# its lstat then found the name back). Every other failure of any command,
# with its command line and stderr, fails the test; so does any error or
# warning in the daemon's log (its stderr: it runs with -f).
#
# Then: every loop stops and is waited for (bounded: a loop still running
# 120 s after the stop fails the test as a hang); device memory of every
# slice is read from the region file; `pcimirror umount` must exit 0 and the
# daemon too; the region after unmount must equal that snapshot; `pcimirror
# fsck --verify` must be clean; `pcimirror restore` into a fresh region must
# reproduce the snapshot at every slice's window. A summary counts each
# operation. No assertion depends on timing: the duration only bounds the
# run.
#
# Under TSan (PCIMIRROR_SANITIZE=thread: scripts/dev.sh's TSan stage runs
# this test by its ctest label `race`) TSAN_OPTIONS gets tests/tsan.supp if
# it names no suppressions; a report in the daemon's stderr fails the test,
# and with log_path (scripts/dev.sh) every report file fails the stage.
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"
command -v getfattr >/dev/null || skip "no getfattr (apt-get install attr)"
command -v jq >/dev/null || skip "no jq"
P=$PCIMIRROR
shopt -s extglob  # the @(a|b) patterns of expected messages

if [[ -n ${PCIMIRROR_SANITIZE:-} ]]; then RUN_S=${RACE_SECONDS:-10}; else RUN_S=${RACE_SECONDS:-15}; fi
INTERVAL=${RACE_INTERVAL:-200ms}
if [[ ${PCIMIRROR_SANITIZE:-} == *thread* && ${TSAN_OPTIONS:-} != *suppressions=* ]]; then
  export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS }halt_on_error=1 suppressions=$(cd "$(dirname "$0")/.." && pwd)/tsan.supp"
fi
log "running for ${RUN_S}s, interval=$INTERVAL${PCIMIRROR_SANITIZE:+, sanitizer $PCIMIRROR_SANITIZE}"

MiB=$((1 << 20))
REGION=$((96 * MiB))
# NAMES OFFSET LENGTH; NAMES "x,y" is a slice renamed x -> y -> x ...
SLICES=("s0 0 $((8 * MiB))"
        "s1 $((8 * MiB)) $((4 * MiB))"
        "ra,rb $((12 * MiB)) $((6 * MiB))"
        "s3 $((20 * MiB)) $((MiB + 4096))"
        "oa,ob $((40 * MiB + 3)) 3000001"
        "big $((48 * MiB)) $((12 * MiB))")
# tmpN slices come and go in [TMP_LO, REGION).
TMP_LO=$((64 * MiB))
STABLE=(s0 s1 s3 big)        # names that never change
RENAMED=(ra rb oa ob)        # names that come and go

DEV=$(new_loop 512M)
MNT=$(new_mountpoint mnt)
RAM=$SHM.ram
specs=()
for s in "${SLICES[@]}"; do
  read -r n o l <<<"$s"
  specs+=(--slice "${n%%,*}:$o:$l")
done
"$P" format "$DEV" --memory "file=$RAM,size=$REGION" "${specs[@]}" >/dev/null
head -c $REGION /dev/urandom | dd of="$RAM" conv=notrunc status=none

# RACE_KEEP=DIR keeps the daemon's log and the failures there (the work
# directory goes at exit).
keep() {
  [[ -n ${RACE_KEEP:-} ]] || return 0
  mkdir -p "$RACE_KEEP" && cp "$WORK/daemon.log" "$WORK/failures" "$RACE_KEEP/" 2>/dev/null || true
}
trap 'keep; cleanup' EXIT

# The daemon in the foreground: its stderr is its log, its exit status is
# checked after the unmount.
"$P" mount "$DEV" "$MNT" -f -o "interval=$INTERVAL" 2>"$WORK/daemon.log" &
DAEMON=$!
for _ in $(seq 300); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "mount did not come up: $(cat "$WORK/daemon.log")"

STOP=$WORK/stop
FAILS=$WORK/failures
: >"$FAILS"
COUNTS=$WORK/counts
mkdir -p "$COUNTS"

# Per-loop state; each loop runs in its own subshell with its own copy.
declare -A N=()
bump() { N[$1]=$((${N[$1]:-0} + 1)); }
dump_counts() {
  local k
  for k in "${!N[@]}"; do echo "$k ${N[$k]}"; done >"$COUNTS/$BASHPID"
}
fail_op() { printf '%s\n' "$*" >>"$FAILS"; }
is_renamed() { [[ " ${RENAMED[*]} " == *" $1 "* ]]; }
rnd() { echo $(((RANDOM << 15 | RANDOM) % $1)); }  # 0 <= n < $1 (< 2^30)
pick() { local a=("$@"); echo "${a[$(rnd ${#a[@]})]}"; }
# length_of NAME: the slice's length.
length_of() {
  local s n o l
  for s in "${SLICES[@]}"; do
    read -r n o l <<<"$s"
    [[ ,$n, == *",$1,"* ]] && { echo "$l"; return; }
  done
  die "no slice $1"
}
# attempt KIND NAME PATTERN CMD...: runs CMD. Success counts KIND; a
# failure counts KIND~enoent when NAME is a renamed slice's name and
# stderr matches PATTERN (the tool's message for ENOENT); any other
# failure is recorded with CMD and its stderr.
attempt() {
  local kind=$1 name=$2 expect=$3 err
  shift 3
  if err=$("$@" 2>&1 >/dev/null); then
    bump "$kind"
    return 0
  fi
  if is_renamed "$name" && [[ $err == $expect ]]; then
    bump "$kind~enoent"
    return 1
  fi
  fail_op "$kind: $* -> ${err:-(no message, exit status only)}"
  return 1
}
# loop KINDS BODY: runs BODY ITERATION (0, 1, ...) until the stop file
# exists, and at least KINDS times: a body picks its kind of operation by
# ITERATION % KINDS, so every kind runs at least once however slow the
# machine (a sanitizer build) is.
loop() {
  local kinds=$1 i=0
  shift
  while [[ ! -e $STOP ]] || ((i < kinds)); do
    "$@" "$i"
    i=$((i + 1))
  done
  dump_counts
}
# Patterns of ENOENT messages: dd's at open, and any tool's.
ENOENT_OPEN="*dd: failed to open '*': No such file or directory*"
ENOENT="*No such file or directory*"
# chmod(1) stats the name, and when that finds nothing but its lstat then
# does (the name came back in between), calls it a dangling symlink.
ENOENT_CHMOD="@(*No such file or directory*|*cannot operate on dangling symlink*)"
all_names() { pick "${STABLE[@]}" "${RENAMED[@]}"; }

dd_write() {
  local name len size off
  name=$(all_names)
  len=$(length_of "$name")
  size=$((1 + $(rnd $((256 * 1024)))))
  ((size > len)) && size=$len
  off=$(rnd $((len - size + 1)))
  attempt dd "$name" "$ENOENT_OPEN" dd if=/dev/urandom of="$MNT/$name" bs="$size" count=1 \
    iflag=fullblock seek="$off" oflag=seek_bytes conv=notrunc,nocreat status=none || true
}

# Source files for cp: smaller than, equal to and odd against the slices.
for sz in 1000 100000 $((MiB + 7)) $((3 * MiB)) $((4 * MiB)); do head -c $sz /dev/urandom >"$WORK/src.$sz"; done
cp_write() {
  local name src len
  name=$(pick "${STABLE[@]}")
  len=$(length_of "$name")
  src=$(pick "$WORK"/src.*)
  (($(stat -c %s "$src") <= len)) || src=$WORK/src.1000
  attempt cp "$name" "$ENOENT" cp "$src" "$MNT/$name" || true
}

read_once() {
  local name st size want
  name=$(all_names)
  case $(($1 % 4)) in
    0) attempt md5sum "$name" "$ENOENT" md5sum "$MNT/$name" || true ;;
    1)
      if size=$(stat -c %s "$MNT/$name" 2>"$WORK/reader.err"); then
        bump stat
        want=$(length_of "$name")
        [[ $size == "$want" ]] || fail_op "stat: $MNT/$name has size $size, not $want"
      elif is_renamed "$name" && grep -q "No such file or directory" "$WORK/reader.err"; then
        bump "stat~enoent"
      else
        fail_op "stat: stat -c %s $MNT/$name -> $(cat "$WORK/reader.err")"
      fi
      ;;
    2)
      if st=$(getfattr --only-values -n user.pcimirror.state "$MNT/$name" 2>"$WORK/reader.err"); then
        bump getfattr
        [[ $st == clean || $st == dirty || $st == syncing ]] || fail_op "getfattr: $MNT/$name state is '$st'"
        attempt getfattr "$name" "$ENOENT" getfattr -d -m pcimirror "$MNT/$name" || true
      elif is_renamed "$name" && grep -q "No such file or directory" "$WORK/reader.err"; then
        bump "getfattr~enoent"
      else
        fail_op "getfattr: getfattr -n user.pcimirror.state $MNT/$name -> $(cat "$WORK/reader.err")"
      fi
      ;;
    3)
      local names
      names=" $(ls "$MNT" | grep -v '^tmp' | sort | tr '\n' ' ')"
      bump ls
      local r=0 o=0
      [[ $names == *" ra "* ]] && r=$((r + 1)); [[ $names == *" rb "* ]] && r=$((r + 1))
      [[ $names == *" oa "* ]] && o=$((o + 1)); [[ $names == *" ob "* ]] && o=$((o + 1))
      for n in "${STABLE[@]}"; do [[ $names == *" $n "* ]] || fail_op "ls: $n missing from '$names'"; done
      ((r == 1 && o == 1)) || fail_op "ls: a renamed slice is not listed exactly once: '$names'"
      ;;
  esac
}

# Metadata and truncation: chmod (one metadata commit) of any slice, and
# truncate(2) of a slice that keeps its name (zero-fills from the new size
# and mirrors, as a close after a write does).
meta_once() {
  local name len
  if (($1 % 2)); then
    name=$(all_names)
    attempt chmod "$name" "$ENOENT_CHMOD" chmod "$(pick 600 640 644)" "$MNT/$name" || true
  else
    name=$(pick "${STABLE[@]}")
    len=$(length_of "$name")
    attempt truncate "$name" "$ENOENT" truncate -s "$((len - $(rnd $((len / 8)))))" "$MNT/$name" || true
  fi
  sleep 0.0$(rnd 5)
  return 0
}

sync_once() {
  local name
  case $(($1 % 3)) in
    0) attempt sync-all - - "$P" sync "$MNT" || true ;;
    1)
      name=$(all_names)
      attempt sync-one "$name" "$ENOENT" "$P" sync "$MNT" "$name" || true
      ;;
    2) attempt sync-group - - "$P" sync "$MNT" s0 big s3 || true ;;
  esac
}

RA=ra OA=oa
rename_once() {
  local to
  if (($1 % 2)); then
    to=$([[ $RA == ra ]] && echo rb || echo ra)
    attempt rename - - "$P" slice rename "$MNT" "$RA" "$to" && RA=$to
  else
    to=$([[ $OA == oa ]] && echo ob || echo oa)
    attempt rename - - "$P" slice rename "$MNT" "$OA" "$to" && OA=$to
  fi
  sleep 0.0$(rnd 5)
  return 0
}

TMP_N=0
tmp_once() {
  local name off len size
  TMP_N=$((TMP_N + 1))
  name=tmp$((TMP_N % 3))  # names come back, at another window
  len=$((4096 + $(rnd $((4 * MiB)))))
  ((TMP_N % 2)) && len=$(((len + 4095) / 4096 * 4096))  # aligned or odd
  off=$((TMP_LO + $(rnd $((REGION - TMP_LO - len + 1)))))
  attempt slice-add - - "$P" slice add "$MNT" "$name:$off:$len" || return 0
  size=$((len < 65536 ? len : 65536))
  attempt tmp-dd - - dd if=/dev/urandom of="$MNT/$name" bs=$size count=1 iflag=fullblock \
    seek=$(rnd $((len - size + 1))) oflag=seek_bytes conv=notrunc,nocreat status=none || true
  ((TMP_N % 3)) || attempt tmp-sync - - "$P" sync "$MNT" "$name" || true
  attempt slice-rm - - "$P" slice rm "$MNT" "$name" || true
  return 0
}

dup_writer() {
  local lens=()
  local s n o l
  for s in "${SLICES[@]}"; do read -r n o l <<<"$s"; lens+=("$n:$l"); done
  python3 - "$MNT" "$STOP" "$FAILS" "$COUNTS/dup" "${lens[@]}" <<'PY'
import errno, os, random, sys
mnt, stop, fails, counts = sys.argv[1:5]
slices = [(s.split(":")[0].split(","), int(s.split(":")[1])) for s in sys.argv[5:]]
n = {}
def bump(k): n[k] = n.get(k, 0) + 1
def fail(what, e):
    with open(fails, "a") as f:
        f.write("dup-writer: %s -> %s\n" % (what, e))
def write(fd, path, length):
    size = random.randint(1, min(length, 200000))
    off = random.randint(0, length - size)
    try:
        w = os.pwrite(fd, os.urandom(size), off)
        if w != size:
            fail("pwrite %s %d@%d" % (path, size, off), "short write of %d" % w)
        bump("dup-pwrite")
    except OSError as e:
        fail("pwrite %s %d@%d" % (path, size, off), e)
it = 0
# Until the stop file exists, and at least until one open succeeded.
while not os.path.exists(stop) or (not n.get("dup-open") and it < 100):
    it += 1
    names, length = random.choice(slices)
    path = os.path.join(mnt, random.choice(names))
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        if e.errno == errno.ENOENT and len(names) > 1:
            bump("dup-open~enoent")
        else:
            fail("open " + path, e)
        continue
    bump("dup-open")
    fd2 = os.dup(fd)
    for _ in range(random.randint(1, 6)):
        write(random.choice((fd, fd2)), path, length)
    if n["dup-open"] % 4 == 1:  # the first open, then every 4th
        try:
            os.fsync(random.choice((fd, fd2)))
            bump("dup-fsync")
        except OSError as e:
            fail("fsync " + path, e)
    first, second = random.sample((fd, fd2), 2)
    for i, f in enumerate((first, second)):
        try:
            os.close(f)
            bump("dup-close")
        except OSError as e:
            fail("close %s (%s)" % (path, "first" if i == 0 else "second"), e)
        if i == 0 and n["dup-open"] % 2:
            write(second, path, length)  # the next close mirrors it
with open(counts, "w") as f:
    for k, v in n.items():
        f.write("%s %d\n" % (k, v))
PY
}

log "racing for ${RUN_S}s"
pids=()
loop 1 dd_write & pids+=($!)
loop 1 dd_write & pids+=($!)
loop 1 cp_write & pids+=($!)
loop 4 read_once & pids+=($!)
loop 3 sync_once & pids+=($!)
loop 2 rename_once & pids+=($!)
loop 3 tmp_once & pids+=($!)
loop 2 meta_once & pids+=($!)
dup_writer & pids+=($!)
sleep "$RUN_S"
touch "$STOP"
for _ in $(seq 1200); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.1
done
if ((alive)); then
  # A hang: what each command waits for in the kernel, and the daemon's
  # threads (gdb, when installed).
  for p in $(pgrep -f "$WORK"); do
    [[ $p == "$DAEMON" ]] && continue
    echo "== $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    cat "/proc/$p/stack" 2>/dev/null | head -12
  done
  if command -v gdb >/dev/null; then
    gdb -p "$DAEMON" -batch -ex "thread apply all bt" 2>/dev/null | grep -E "^Thread|^#" | grep -v "libtsan\|__sanitizer" || true
  fi
  cat "$FAILS" >&2
  die "operations still running 120 s after the stop: a hang (commands and daemon threads above)"
fi
for p in "${pids[@]}"; do wait "$p" || die "a loop exited with $?"; done

echo
echo "| operation | done | ENOENT by a renamed name |"
echo "|---|---|---|"
cat "$COUNTS"/* | awk '{split($1, k, "~"); if (k[2] == "enoent") e[k[1]] += $2; else d[k[1]] += $2; all[k[1]] = 1}
  END {for (x in all) printf "| %s | %d | %d |\n", x, d[x], e[x]}' | sort
printf '| daemon: mirrors (sync lines) | %d | |\n' "$(grep -c 'sync slice=' "$WORK/daemon.log" || true)"
printf '| daemon: group syncs | %d | |\n' "$(grep -c 'group sync' "$WORK/daemon.log" || true)"
printf '| daemon: mirrors with write-behind | %d | |\n' "$(grep -c 'behind_bytes=' "$WORK/daemon.log" || true)"
echo
echo "the daemon's errors and warnings (count, line):"
grep -E "pcimirror: (error|warning):" "$WORK/daemon.log" | sed "s|$WORK|W|g" | sort | uniq -c || true
echo

if [[ -s $FAILS ]]; then
  echo "unexpected failures ($(wc -l <"$FAILS")):" >&2
  sort "$FAILS" | uniq -c | sort -rn | head -50 >&2
  die "unexpected failures during the race"
fi
# Every kind ran (the loops make sure of it; this checks the counting).
for k in dd cp md5sum stat getfattr ls sync-all sync-one sync-group rename chmod truncate \
    slice-add tmp-dd tmp-sync slice-rm dup-open dup-pwrite dup-fsync dup-close; do
  cat "$COUNTS"/* | awk -v k="$k" '$1 == k || $1 == k "~enoent" {n += $2} END {exit !(n > 0)}' \
    || die "no '$k' ran during the race"
done

log "memory of every slice after the race, then pcimirror umount"
json=$("$P" status "$MNT" --json)
mapfile -t final < <(jq -r '.slices[] | "\(.name) \(.offset_bytes) \(.length_bytes)"' <<<"$json")
((${#final[@]} == ${#SLICES[@]})) || die "slices after the race: ${final[*]}"
window() {  # window FILE OFFSET LENGTH
  dd if="$1" bs=64K iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}
for s in "${final[@]}"; do
  read -r n o l <<<"$s"
  window "$RAM" "$o" "$l" >"$WORK/at-unmount.$n"
done
"$P" umount "$MNT" >"$WORK/umount.out" 2>&1 || die "pcimirror umount failed: $(cat "$WORK/umount.out")"
rc=0
wait "$DAEMON" || rc=$?
((rc == 0)) || die "the daemon exited $rc: $(tail -20 "$WORK/daemon.log")"

log "the daemon's log: no errors, no warnings"
if grep -E "ThreadSanitizer|AddressSanitizer|LeakSanitizer|runtime error" "$WORK/daemon.log"; then
  die "sanitizer report in the daemon's log"
fi
bad=$(grep -E "pcimirror: (error|warning):" "$WORK/daemon.log" || true)
[[ -z $bad ]] || die "errors or warnings in the daemon's log: $bad"

log "the region after unmount equals memory at unmount"
for s in "${final[@]}"; do
  read -r n o l <<<"$s"
  cmp "$WORK/at-unmount.$n" <(window "$RAM" "$o" "$l") || die "slice $n's memory changed at unmount"
done

log "fsck --verify is clean"
"$P" fsck "$DEV" --verify >"$WORK/fsck.out" 2>&1 || die "fsck --verify: $(cat "$WORK/fsck.out")"

log "restore into a fresh region equals memory at unmount, slice by slice"
"$P" restore "$DEV" --memory "file=$SHM.restored,size=$REGION" >"$WORK/restore.out" 2>&1 \
  || die "restore: $(cat "$WORK/restore.out")"
bad=()
for s in "${final[@]}"; do
  read -r n o l <<<"$s"
  if ! cmp "$WORK/at-unmount.$n" <(window "$SHM.restored" "$o" "$l"); then
    bad+=("$n")
    log "$n: generation $(slice_field "$DEV" "$n" generation), copy $(slice_field "$DEV" "$n" current_copy)"
  fi
done
((${#bad[@]} == 0)) || die "restored mirror differs from memory at unmount for: ${bad[*]}"
echo "PASS race"
