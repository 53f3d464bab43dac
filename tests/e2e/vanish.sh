#!/usr/bin/env bash
# A vanishing target (issue 13, item 4): the mirror's block device fails
# mid-life, as /dev/nbd0 does when its server dies. Here a loop device sits
# on a file served by pcimirror-unreadable-fs (a FUSE file system); killing
# that server makes every read and write of the loop device fail with EIO.
#  - the sync fails with EIO naming the device, nothing is committed, status
#    shows the error, and the daemon keeps serving device memory;
#  - the daemon closes the failed device, so it can be reconnected: the loop
#    device is detached and attached again to the restarted server's file;
#  - the next sync reopens it, checks it still holds this volume at the same
#    generation, and commits; no generation was lost (log, restore).
# The same with a real NBD server runs in the VM (tests/vm/liveness.sh).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vanish_lib.sh"
MNT=$(new_mountpoint mnt)
gen() { "$P" status "$MNT" --json | jq -r .metadata_generation; }

"$P" format "$DEV" --memory "file=$SHM.ram,size=16M" --slice a:0:4M --slice b:4M:4M >/dev/null
"$P" mount "$DEV" "$MNT" -o mirror_on_close=off,write_behind=off
random_file "$WORK/a1" 4
dd if="$WORK/a1" of="$MNT/a" bs=1M conv=notrunc status=none
"$P" sync "$MNT" >/dev/null
g=$(gen)

log "the device vanishes (its server is killed): EIO, nothing committed"
kill -9 "$ufs"; wait "$ufs" 2>/dev/null || true
random_file "$WORK/a2" 4
dd if="$WORK/a2" of="$MNT/a" bs=1M conv=notrunc status=none
out=$("$P" sync "$MNT" a 2>&1) && die "sync to a vanished device succeeded"
echo "$out"
grep -q "Input/output error" <<<"$out" || die "not EIO: $out"
grep -q "$DEV" <<<"$out" || die "the message does not name $DEV: $out"
grep -q "pcimirror closed $DEV" <<<"$out" || die "the message does not say the device was closed: $out"
cmp "$WORK/a2" "$MNT/a" || die "reads of device memory stopped"
st=$("$P" status "$MNT" --json 2>"$WORK/status.err") && die "status of an unreadable device exited 0"
grep -q "Input/output error" <<<"$(jq -r .last_sync_error <<<"$st")" || die "status shows no sync error: $st"
grep -q "Input/output error" <<<"$(jq -r .device_error <<<"$st")" || die "status shows no device error: $st"

log "reconnect: detach, restart the server, attach the same loop device"
reconnect_device
[[ $(gen) == "$g" ]] || die "the failed sync committed: generation $g -> $(gen)"

log "the next sync reopens the device and commits"
"$P" sync "$MNT" a >/dev/null || die "sync after the reconnect failed"
(( $(gen) == g + 1 )) || die "sync after the reconnect did not commit once: $g -> $(gen)"
[[ -z $("$P" status "$MNT" --json | jq -r .last_sync_error) ]] || die "the error stays after a good sync"
"$P" umount "$MNT" >/dev/null
wait_released "$DEV"
[[ $("$P" log "$DEV" a --json | jq -c '[.slices[0].generations[].generation]') == "[2,1]" ]] ||
  die "log: $("$P" log "$DEV" a --json)"
"$P" restore "$DEV" --memory "file=$SHM.new,size=16M" a >/dev/null
cmp -n $((4 * 1048576)) "$WORK/a2" "$SHM.new" || die "restore after the reconnect"
"$P" restore "$DEV" --memory "file=$SHM.old,size=16M" --generation 1 a >/dev/null
cmp -n $((4 * 1048576)) "$WORK/a1" "$SHM.old" || die "generation 1 lost"
echo "PASS vanish"
