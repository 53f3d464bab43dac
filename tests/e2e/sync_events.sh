#!/usr/bin/env bash
# sync-failed and sync-recovered events (fs/events.h) with two slices, one
# whose DMA channel fails (pcimirror-unreadable-fs under the c2h stand-in):
# a good mirror of the other slice does not send sync-recovered while the
# first still fails (found by the adversarial review of issue 13; failed
# before the fix: one volume-wide flag alternated with every good mirror).
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "no jq"
UFS=${PCIMIRROR_UNREADABLE_FS:-}
[[ -x $UFS ]] || skip "set PCIMIRROR_UNREADABLE_FS"
P=$PCIMIRROR
CARD="$WORK/card.mem"; truncate -s 20M "$CARD"
DEV=$(new_loop 64M)
MNT=$(new_mountpoint mnt)
"$P" format "$DEV" --memory "c2h=$CARD,h2c=$CARD,card_offset=0x100000,size=16M" --slice a:0:4M --slice b:8M:4M >/dev/null
uuid=$("$P" status "$DEV" --json | jq -r .uuid)
EV=/run/pcimirror/$uuid.events; rm -f "$EV"
: >"$WORK/bad.list"
UMNT=$(new_mountpoint ufs)
"$UFS" "$CARD" "$WORK/bad.list" "$UMNT" -f & UPID=$!
for _ in $(seq 100); do [[ -e $UMNT/disk ]] && break; sleep 0.1; done
t() { fusermount3 -u "$MNT" 2>/dev/null || true; sleep 0.5; fusermount3 -u "$UMNT" 2>/dev/null || true; kill $UPID 2>/dev/null || true; cleanup; }
trap t EXIT
"$P" mount "$DEV" "$MNT" -f -o "c2h=$UMNT/disk,h2c=$CARD,card_offset=0x100000,mirror_on_close=off,write_behind=off" 2>"$WORK/daemon.log" &
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
random_file "$WORK/x" 4
dd if="$WORK/x" of="$MNT/a" bs=1M conv=notrunc status=none
dd if="$WORK/x" of="$MNT/b" bs=1M conv=notrunc status=none
echo "$((0x100000 + (2 << 20))) 512" >"$WORK/bad.list"   # a's card range fails
"$P" sync "$MNT" a >/dev/null 2>&1 && die "sync a succeeded"
"$P" sync "$MNT" b >/dev/null || die "sync b failed"
echo "events:"; jq -c '{event, message: .message[0:80]}' "$EV"
echo "last_sync_error: $("$P" status "$MNT" --json | jq -r .last_sync_error | cut -c1-100)"
echo "a state: $(getfattr --only-values -n user.pcimirror.state "$MNT/a" 2>/dev/null)"
last=$(tail -1 "$EV" | jq -r .event)
: >"$WORK/bad.list"
[[ $last == sync-recovered ]] && { echo "BUG: sync-recovered emitted while slice a still fails (status still shows its error)"; exit 1; }
grep '"event":"sync-failed"' "$EV" | jq -e '.slice == "a" and .errno == "5"' >/dev/null || die "sync-failed lacks slice a and errno 5"
"$P" sync "$MNT" a >/dev/null || die "sync a after the fault was cleared"
[[ $(tail -1 "$EV" | jq -r .event) == sync-recovered ]] || die "no sync-recovered once every slice mirrors again"
rm -f "$EV"
echo "PASS sync_events"
