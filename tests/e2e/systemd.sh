#!/usr/bin/env bash
# systemd: the unit passes `systemd-analyze verify`, and the daemon speaks
# the notify protocol (sd_notify(3)) to a listening NOTIFY_SOCKET: READY=1
# once the mount is live, STOPPING=1 when it stops.
source "$(dirname "$0")/lib.sh"
UNIT=$(dirname "$0")/../../packaging/pcimirror@.service
command -v python3 >/dev/null || skip "no python3 for the notify listener"

log "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$WORK/units"
  sed "s|/usr/sbin/pcimirror|$PCIMIRROR|g" "$UNIT" >"$WORK/units/pcimirror@lab.service"
  systemd-analyze verify --man=no "$WORK/units/pcimirror@lab.service" || die "systemd-analyze verify"
else
  echo "systemd-analyze not installed: verify skipped"
fi

log "notify protocol"
DEV=$(new_loop 128M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=16M" --slice a:0:4M >/dev/null
SOCK=$WORK/notify.sock
python3 - "$SOCK" "$WORK/messages" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "a") as out:
    while True:
        try:
            d = s.recv(4096).decode()
        except socket.timeout:
            break
        out.write(d.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in d:
            break
PY
listener=$!
for _ in $(seq 50); do [[ -S $SOCK ]] && break; sleep 0.1; done
NOTIFY_SOCKET=$SOCK "$PCIMIRROR" mount "$DEV" "$MNT" -f 2>"$WORK/daemon.err" &
daemon=$!
for _ in $(seq 100); do grep -q READY=1 "$WORK/messages" 2>/dev/null && break; sleep 0.1; done
grep -q READY=1 "$WORK/messages" || die "no READY=1"
mountpoint -q "$MNT" || die "READY=1 before the mount was live"
echo data >"$MNT/a"
"$PCIMIRROR" umount "$MNT" >/dev/null
wait $daemon || { rc=$?; cat "$WORK/daemon.err"; die "daemon exit status $rc"; }
wait $listener || true
grep -q STOPPING=1 "$WORK/messages" || die "no STOPPING=1"
cat "$WORK/messages"
echo "PASS systemd"
