#!/usr/bin/env bash
# A history of generations (issue 13 item 3) on a real loop device and a
# real mount: format --copies 3, three syncs of different data, `log` lists
# the three generations (text and --json, on the device and the mount
# point), `restore --generation G` gives each back exactly, a fourth sync
# overwrites only the oldest, and format refuses --copies 17 and the old
# --slots naming --copies. --copies 1 mirrors in place.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
P=$PCIMIRROR

expect_fail() {  # expect_fail PATTERN CMD...: exit 1 and PATTERN in the output
  local pattern=$1; shift
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == 1 ]] || die "$* exited $rc, not 1: $out"
  grep -qE -- "$pattern" <<<"$out" || die "$*: no /$pattern/ in: $out"
}

DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
RAM="file=$SHM.ram,size=16M"

log "format --copies 17 and --slots are refused, naming --copies"
expect_fail "--copies 17: give 1 to 16" "$P" format "$DEV" --memory "$RAM" --slice a:0:4M --copies 17
expect_fail "--slots 2 is gone: give --copies" "$P" format "$DEV" --memory "$RAM" --slice a:0:4M --slots 2
"$P" status "$DEV" >/dev/null 2>&1 && die "a refused format left a volume"

log "format --copies 3"
"$P" format "$DEV" --memory "$RAM" --slice a:0:4M --slice b:4M:1M --copies 3 >"$WORK/format.out"
grep -q "mirror copies     3 (the last 3 generations" "$WORK/format.out" || die "format: $(cat "$WORK/format.out")"
json=$("$P" status "$DEV" --json)
[[ $(jq .mirror_copies <<<"$json") == 3 ]] || die "mirror_copies: $json"
[[ $(jq .generations_feature <<<"$json") == true ]] || die "generations feature bit not set"
[[ $(jq '.slices[0].copies | length' <<<"$json") == 3 ]] || die "copies per slice"
"$P" status "$DEV" | grep -q "3 copies per slice (the last 3 generations" || die "status text"

log "mount without mirror at close; three syncs of different data"
"$P" mount "$DEV" "$MNT" -o mirror_on_close=off
for g in 1 2 3; do
  random_file "$WORK/a$g" 4
  dd if="$WORK/a$g" of="$MNT/a" bs=1M conv=notrunc status=none
  "$P" sync "$MNT" a >/dev/null
  [[ $(slice_field "$DEV" a generation) == "$g" ]] || die "generation after sync $g"
done

log "log lists three generations, newest first"
"$P" log "$MNT" a >"$WORK/log.txt"
cat "$WORK/log.txt"
grep -qE '^  \* +3 ' "$WORK/log.txt" || die "generation 3 is not marked current"
[[ $(grep -cE '^ +[* ] +[0-9]+  [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +4194304 ' "$WORK/log.txt") == 3 ]] \
  || die "log does not list three generations"
lj=$("$P" log "$DEV" --json)
[[ $(jq -c '[.slices[] | select(.name=="a") | .generations[].generation]' <<<"$lj") == "[3,2,1]" ]] \
  || die "log --json generations: $lj"
[[ $(jq -c '[.slices[] | select(.name=="a") | .generations[].current]' <<<"$lj") == "[true,false,false]" ]] \
  || die "log --json current: $lj"
[[ $(jq -r '.slices[] | select(.name=="a") | .generations[0].crc32c_hex' <<<"$lj") == \
   $(printf '%08x' "$(slice_field "$DEV" a crc32c)") ]] || die "log crc32c differs from status"
jq -e '.slices[] | select(.name=="a") | .generations[] | (.sync_time_ns > 0) and (.bytes == 4194304) and (.sync_time | test("Z$")) and (.path != "none")' <<<"$lj" >/dev/null \
  || die "log --json fields: $lj"
[[ $(jq -c '[.slices[] | select(.name=="b") | .generations[]] | length' <<<"$lj") == 0 ]] || die "b was never mirrored"
"$P" log "$DEV" b | grep -q "never mirrored" || die "log of an unmirrored slice"
expect_fail "no slice named 'nosuch'" "$P" log "$DEV" a nosuch

fusermount3 -u "$MNT"; wait_released "$DEV"

log "restore --generation G gives each generation back exactly"
for g in 1 3 2; do
  "$P" restore "$DEV" --generation $g a >"$WORK/restore.out"
  grep -q "^restored a .*generation $g " "$WORK/restore.out" || die "restore output: $(cat "$WORK/restore.out")"
  cmp -n 4194304 "$WORK/a$g" "$SHM.ram" || die "generation $g differs"
done
expect_fail "not every slice named holds that generation.*slice 'b' has no generation 1, its generations: none.*left untouched" \
  "$P" restore "$DEV" --generation 1 a b
cmp -n 4194304 "$WORK/a2" "$SHM.ram" || die "a refused restore wrote memory"
expect_fail "slice 'a' has no generation 7, its generations: 3 \(current\), 2, 1" "$P" restore "$DEV" --generation 7 a

log "a fourth sync overwrites the oldest only"
"$P" mount "$DEV" "$MNT" -o mirror_on_close=off
random_file "$WORK/a4" 4
dd if="$WORK/a4" of="$MNT/a" bs=1M conv=notrunc status=none
"$P" sync "$MNT" a >/dev/null
[[ $("$P" log "$MNT" a --json | jq -c '[.slices[0].generations[].generation]') == "[4,3,2]" ]] \
  || die "log after the fourth sync: $("$P" log "$DEV" a)"
fusermount3 -u "$MNT"; wait_released "$DEV"
for g in 2 3 4; do
  "$P" restore "$DEV" --generation $g a >/dev/null
  cmp -n 4194304 "$WORK/a$g" "$SHM.ram" || die "generation $g differs after the fourth sync"
done
expect_fail "slice 'a' has no generation 1" "$P" restore "$DEV" --generation 1 a

log "damage the current copy: restore falls back to generation 3 and says so"
start=$("$P" status "$DEV" --json | jq -r '.slices[] | select(.name=="a") | .extents[0].start_sector')
printf 'XX' | dd of="$DEV" bs=1 seek=$((start * 512 + 1048576 + 3)) conv=notrunc status=none
sync
"$P" restore "$DEV" a >"$WORK/restore.out"
grep -q "^restored a .*generation 3 .*current mirror, copy 0 (generation 4) is damaged.*restored generation 3 (copy 2)" "$WORK/restore.out" \
  || die "fallback output: $(cat "$WORK/restore.out")"
cmp -n 4194304 "$WORK/a3" "$SHM.ram" || die "fallback restored the wrong data"
expect_fail "restore of slice 'a' generation 4 failed.*4 \(current\), 3, 2" "$P" restore "$DEV" --generation 4 a
cmp -n 4194304 "$WORK/a3" "$SHM.ram" || die "a failed chosen restore wrote memory"

log "fsck --verify --repair makes generation 3 current"
set +e; "$P" fsck "$DEV" --verify --repair >"$WORK/fsck.out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] || die "fsck --repair exited $rc: $(cat "$WORK/fsck.out")"
[[ $("$P" log "$DEV" a --json | jq -c '[.slices[0].generations[].generation]') == "[3,2]" ]] \
  || die "log after repair: $("$P" log "$DEV" a)"

log "--copies 1 mirrors in place"
DEV1=$(new_loop 64M)
"$P" format "$DEV1" --memory "file=$SHM.one,size=8M" --slice a:0:1M --copies 1 >/dev/null
[[ $("$P" status "$DEV1" --json | jq .mirror_copies) == 1 ]] || die "--copies 1"
[[ $("$P" status "$DEV1" --json | jq .generations_feature) == false ]] || die "--copies 1 set the feature bit"
"$P" mount "$DEV1" "$MNT"
random_file "$WORK/one" 1
cp "$WORK/one" "$MNT/a"
fusermount3 -u "$MNT"; wait_released "$DEV1"
[[ $("$P" log "$DEV1" --json | jq -c '[.slices[0].generations[] | [.generation, .copy]]') == "[[1,0]]" ]] \
  || die "log of --copies 1"
"$P" restore "$DEV1" --generation 1 >/dev/null
cmp -n 1048576 "$WORK/one" "$SHM.one" || die "--copies 1 restore differs"
log "ok"
