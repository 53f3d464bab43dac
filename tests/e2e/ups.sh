#!/usr/bin/env bash
# The UPS watch (issue 15, items 1, 2 and the UPS events of 4) against a
# real NUT stack on localhost: the dummy-ups driver serving a .dev file that
# this test rewrites, and upsd listening on 127.0.0.1 on a free port, both
# run as root from a private config dir (NUT_CONFPATH, NUT_STATEPATH).
#  0. Without ups=: `no UPS`. A UPS that upsd does not know: `unreachable`, with upsd's answer.
#  1. OL at mount: before any mirror the save time is unknown (unprotected);
#     after one, protected. battery.runtime below the estimate x ups_margin:
#     unprotected with the reason; raised again: protected.
#  2. OL -> OB: every slice (including memory changed behind the mount's
#     back) is mirrored within seconds, generations bumped; and again
#     after ups_interval while on battery.
#  3. OB -> OB LB: a final mirror, then writes, truncation and opens for
#     writing fail with EROFS; the committed mirrors equal memory at that
#     moment; status says writes are refused. OL: writes accepted again.
#  3b. Memory reset (the canary) before LB: the final mirror is refused,
#     the volume unprotected with the memory guard's reason; the final
#     mirror is tried again at each poll and commits after accept.
#  4. FSD (separately): the same, proven by a restore into a fresh region
#     after the unmount (which mirrors nothing more).
#  5. upsd stopped: the UPS is `unreachable`, the volume unprotected.
#  6. Every transition above wrote its JSON event to /run/pcimirror/UUID.events.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
command -v python3 >/dev/null || skip "no python3 (to find a free port)"
DUMMY=/lib/nut/dummy-ups
UPSD=/lib/nut/upsd  # the binary; /sbin/upsd is a wrapper that reads /etc/nut/nut.conf
[[ -x $DUMMY ]] || skip "no $DUMMY (apt-get install nut-server)"
[[ -x $UPSD ]] || skip "no $UPSD (apt-get install nut-server)"
command -v upsc >/dev/null || skip "no upsc (apt-get install nut-client)"
P=$PCIMIRROR

NUT=$WORK/nut
mkdir -p "$NUT/state"
chmod 0700 "$NUT" "$NUT/state"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
UPS=test@127.0.0.1:$PORT
cat >"$NUT/ups.conf" <<EOF
[test]
  driver = dummy-ups
  port = $NUT/test.dev
  mode = dummy-once
  pollinterval = 1
  desc = "pcimirror e2e"
EOF
cat >"$NUT/upsd.conf" <<EOF
LISTEN 127.0.0.1 $PORT
STATEPATH $NUT/state
EOF
: >"$NUT/upsd.users"
echo "MODE=standalone" >"$NUT/nut.conf"
chmod 0600 "$NUT"/*.conf "$NUT/upsd.users"

# set_ups STATUS CHARGE RUNTIME: rewrites the .dev file. dummy-once re-reads
# it when its mtime changes; each rewrite gets a distinct mtime.
STAMP=1700000000
set_ups() {
  printf 'ups.status: %s\nbattery.charge: %s\nbattery.runtime: %s\n' "$1" "$2" "$3" >"$NUT/test.dev.new"
  mv -f "$NUT/test.dev.new" "$NUT/test.dev"
  STAMP=$((STAMP + 1))
  touch -d "@$STAMP" "$NUT/test.dev"
}
set_ups OL 100 600

DRV_PID= UPSD_PID= EVENTS=
nut_cleanup() {
  local rc=$?
  set +e
  for pid in $UPSD_PID $DRV_PID; do kill "$pid" 2>/dev/null; done
  for pid in $UPSD_PID $DRV_PID; do wait "$pid" 2>/dev/null; done
  [[ -n $EVENTS ]] && rm -f "$EVENTS" "$EVENTS.1"
  cleanup
  exit "$rc"
}
trap nut_cleanup EXIT
export NUT_CONFPATH=$NUT NUT_STATEPATH=$NUT/state
"$DUMMY" -a test -u root -F >"$WORK/driver.log" 2>&1 &
DRV_PID=$!
for _ in $(seq 50); do compgen -G "$NUT/state/dummy-ups-test*" >/dev/null && break; sleep 0.1; done
"$UPSD" -u root -F >"$WORK/upsd.log" 2>&1 &
UPSD_PID=$!
for _ in $(seq 100); do
  [[ $(upsc "$UPS" ups.status 2>/dev/null) == OL ]] && break
  sleep 0.1
done
[[ $(upsc "$UPS" ups.status 2>/dev/null) == OL ]] ||
  skip "the NUT stack did not come up: $(cat "$WORK/driver.log" "$WORK/upsd.log")"
log "upsd on 127.0.0.1:$PORT serves UPS 'test' (dummy-ups)"

DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
RAM=$SHM.ram
CANARY=$((16 * 1048576))
"$P" format "$DEV" --memory "file=$RAM,size=32M" --slice a:0:8M --slice b:8M:4M \
  --canary $CANARY >/dev/null
UUID=$("$P" status "$DEV" --json | jq -r .uuid)
EVENTS=/run/pcimirror/$UUID.events
rm -f "$EVENTS"

prot() { "$P" status "$MNT" --json | jq -r ".protection.$1"; }
gen_of() { "$P" status "$MNT" --json | jq -r --arg n "$1" '.slices[] | select(.name==$n) | .generation'; }
# wait_for WHAT COMMAND...: up to 20 s for COMMAND to succeed.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 200); do "$@" && return 0; sleep 0.1; done
  die "$what: $("$P" status "$MNT" --json | jq -c .protection)"
}
prot_is() { [[ $(prot "$1") == "$2" ]]; }
gen_above() { (($(gen_of "$1") > $2)); }
has_event() { [[ -e $EVENTS ]] && jq -r .event "$EVENTS" | grep -qx "$1"; }

log "0. without ups=: no UPS; a UPS that upsd does not know: unreachable, with upsd's answer"
"$P" mount "$DEV" "$MNT"
[[ $(prot state) == "no UPS" ]] || die "state without ups=: $(prot state)"
"$P" umount "$MNT"
wait_released "$DEV"
"$P" mount "$DEV" "$MNT" -o "ups=nosuch@127.0.0.1:$PORT"
wait_for "unknown UPS unreachable" prot_is ups_status unreachable
grep -q "Unknown UPS" <<<"$(prot reason)" || die "reason: $(prot reason)"
"$P" status "$MNT" | grep -E "^(protection|ups) "
"$P" umount "$MNT"
wait_released "$DEV"
rm -f "$EVENTS"

# In the foreground, so its log can be read.
"$P" mount "$DEV" "$MNT" -f -o "ups=$UPS,ups_interval=2s,mirror_on_close=sync" 2>"$WORK/daemon.log" &
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "mount did not come up: $(cat "$WORK/daemon.log")"

log "1. protection: unknown before a mirror, then protected; runtime below the estimate"
wait_for "ups_status OL" prot_is ups_status OL
# No mirror measured yet (unless a tick raced ahead: it has none here).
[[ $(prot state) == unprotected ]] || die "protected before any mirror: $(prot reason)"
grep -q "save time unknown" <<<"$(prot reason)" || die "reason: $(prot reason)"
[[ $(prot estimate_s) == null ]] || die "an estimate before any mirror: $(prot estimate_s)"
random_file "$WORK/a0" 8
cp "$WORK/a0" "$MNT/a"  # the close mirrors it: the first measurement
wait_for "protected after a mirror" prot_is state protected
"$P" status "$MNT" --json | jq -c .protection
"$P" status "$MNT" | grep -E "^(protection|ups) "
[[ $(prot runtime_s) == 600 ]] || die "runtime_s $(prot runtime_s)"
[[ $(prot battery_charge) == 100 ]] || die "battery_charge $(prot battery_charge)"
awk -v e="$(prot estimate_s)" 'BEGIN { exit !(e > 0) }' || die "estimate_s $(prot estimate_s)"
set_ups OL 100 0
wait_for "unprotected with runtime 0" prot_is state unprotected
reason=$(prot reason)
echo "$reason"
grep -q "exceeds the battery runtime of 0" <<<"$reason" || die "reason: $reason"
set_ups OL 100 600
wait_for "protected again with runtime 600" prot_is state protected

log "2. OL -> OB: every slice mirrored at once, then every ups_interval"
ga=$(gen_of a) gb=$(gen_of b)
# Memory changed behind the mount's back (the device writes unseen).
random_file "$WORK/b1" 4
dd if="$WORK/b1" of="$RAM" bs=1M seek=8 conv=notrunc status=none
set_ups OB 90 500
wait_for "slice a mirrored on battery" gen_above a "$ga"
wait_for "slice b mirrored on battery" gen_above b "$gb"
mirror_of "$DEV" b "$WORK/b1.mirror"
cmp "$WORK/b1" "$WORK/b1.mirror" || die "b's mirror on battery is not memory"
ga=$(gen_of a)
wait_for "a mirror after ups_interval on battery" gen_above a "$ga"
[[ $(prot ups_status) == OB ]] || die "ups_status $(prot ups_status)"

log "3. OB -> OB LB: final mirror, then EROFS; OL again: writes accepted"
random_file "$WORK/a2" 8
dd if="$WORK/a2" of="$MNT/a" bs=1M conv=notrunc status=none
random_file "$WORK/b2" 4
dd if="$WORK/b2" of="$RAM" bs=1M seek=8 conv=notrunc status=none
ga=$(gen_of a) gb=$(gen_of b)
set_ups "OB LB" 10 60
wait_for "writes refused on low battery" prot_is writes_refused true
wait_for "final mirror of a" gen_above a "$ga"
wait_for "final mirror of b" gen_above b "$gb"
out=$(dd if=/dev/zero of="$MNT/a" bs=4k count=1 conv=notrunc 2>&1) && die "a write was accepted after LB"
grep -q "Read-only file system" <<<"$out" || die "write after LB: $out"
out=$(truncate -s 0 "$MNT/b" 2>&1) && die "a truncate was accepted after LB"
grep -q "Read-only file system" <<<"$out" || die "truncate after LB: $out"
cmp -n 8M "$WORK/a2" "$MNT/a" || die "reads changed after LB"
"$P" status "$MNT" | grep -q "^writes      refused with EROFS" || die "status table: $("$P" status "$MNT")"
mirror_of "$DEV" a "$WORK/a.mirror"
mirror_of "$DEV" b "$WORK/b.mirror"
cmp "$WORK/a.mirror" <(head -c 8M "$RAM") || die "a's final mirror is not memory"
cmp "$WORK/b.mirror" <(tail -c +$((8 * 1048576 + 1)) "$RAM" | head -c 4M) || die "b's final mirror is not memory"
set_ups OL 20 900
wait_for "writes accepted when back online" prot_is writes_refused false
dd if="$WORK/a0" of="$MNT/a" bs=1M conv=notrunc status=none || die "write refused when back online"

log "3b. memory reset before LB: final mirror refused, unprotected with the guard's reason, retried until it commits"
printf 'XXXXXXXX' | dd of="$RAM" bs=1 seek=$CANARY conv=notrunc status=none
set_ups "OB LB" 10 60
wait_for "writes refused on low battery" prot_is writes_refused true
wait_for "unprotected after a refused final mirror" prot_is state unprotected
reason=$(prot reason)
echo "$reason"
grep -q "memory-reset" <<<"$reason" || die "reason: $reason"
grep -q "final mirror: mirroring every slice failed" "$WORK/daemon.log" || die "no failed final mirror in the log"
"$P" sync --accept-memory "$MNT" >/dev/null
wait_for "the final mirror retried" grep -q "final mirror, again: mirrored every slice" "$WORK/daemon.log"
wait_for "protected after accept" prot_is state protected
set_ups OL 20 900
wait_for "writes accepted when back online" prot_is writes_refused false

log "4. FSD: final mirror, EROFS, restore into a fresh region equals memory"
dd if="$WORK/b1" of="$RAM" bs=1M seek=8 conv=notrunc status=none
ga=$(gen_of a) gb=$(gen_of b)
set_ups "OB FSD" 20 300
wait_for "writes refused on FSD" prot_is writes_refused true
wait_for "final mirror of a" gen_above a "$ga"
wait_for "final mirror of b" gen_above b "$gb"
out=$(dd if=/dev/zero of="$MNT/b" bs=4k count=1 conv=notrunc 2>&1) && die "a write was accepted after FSD"
grep -q "Read-only file system" <<<"$out" || die "write after FSD: $out"
head -c 12M "$RAM" >"$WORK/at_fsd.ram"
ga=$(gen_of a) gb=$(gen_of b)

log "5. upsd stopped: unreachable"
kill "$UPSD_PID"
wait "$UPSD_PID" 2>/dev/null || true
UPSD_PID=
wait_for "ups_status unreachable" prot_is ups_status unreachable
[[ $(prot state) == unprotected ]] || die "state with upsd stopped: $(prot state)"
grep -q "unreachable" <<<"$(prot reason)" || die "reason: $(prot reason)"
"$P" status "$MNT" | grep -E "^(protection|ups) "

"$P" umount "$MNT"
wait_released "$DEV"
[[ $("$P" status "$DEV" --json | jq -r '.slices[] | select(.name=="a") | .generation') == "$ga" ]] ||
  die "the unmount mirrored slice a again"
"$P" restore "$DEV" --memory "file=$SHM.new,size=32M" >/dev/null
cmp "$WORK/at_fsd.ram" <(head -c 12M "$SHM.new") || die "restore after FSD is not memory at FSD"

log "6. events"
cat "$EVENTS"
for e in unprotected protected on-battery low-battery online forced-shutdown ups-unreachable; do
  has_event "$e" || die "no $e event in $EVENTS"
done
jq -s -e --arg u "$UPS" '[.[] | select(.event == "on-battery")] |
  length == 3 and all(.ups == $u and (.ups_status | test("^OB")))' "$EVENTS" >/dev/null ||
  die "on-battery events: one per power failure, with the UPS and its status"
jq -s -e '[.[] | select(.event == "low-battery")][0] |
  .battery_charge == "10" and .battery_runtime == "60"' "$EVENTS" >/dev/null ||
  die "low-battery event: battery fields"
log "PASS"
