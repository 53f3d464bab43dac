# A mirror device that can vanish and come back, for vanish*.sh: a loop
# device over the file that pcimirror-unreadable-fs (a FUSE file system)
# serves from $IMG. Killing the server ($ufs) makes every read and write of
# the loop device fail with EIO; reconnect_device brings it back under the
# same loop device. Source after lib.sh; sets IMG, UMNT, ufs, DEV, P.
command -v jq >/dev/null || skip "no jq"
UFS=${PCIMIRROR_UNREADABLE_FS:-}
[[ -x $UFS ]] || skip "set PCIMIRROR_UNREADABLE_FS to the pcimirror-unreadable-fs helper"
P=$PCIMIRROR
IMG=$WORK/backing.bin
truncate -s 96M "$IMG"
: >"$WORK/bad"
UMNT=$WORK/ufs
mkdir -p "$UMNT"
# start_server: serves $IMG at $UMNT/disk in the background ($ufs).
start_server() {
  "$UFS" "$IMG" "$WORK/bad" "$UMNT" -f &
  ufs=$!
  for _ in $(seq 50); do [[ -e $UMNT/disk ]] && break; sleep 0.1; done
  [[ -e $UMNT/disk ]] || die "pcimirror-unreadable-fs did not mount"
}
start_server
DEV=$(losetup --find --show --direct-io=off "$UMNT/disk") || skip "losetup on a FUSE file failed"
untrap() {
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts); do
    [[ $m == "$UMNT" ]] || fusermount3 -uz "$m" 2>/dev/null || true
  done
  for _ in $(seq 50); do pgrep -f "pcimirror mount $DEV " >/dev/null || break; sleep 0.1; done
  losetup -d "$DEV" 2>/dev/null || true
  kill "$ufs" 2>/dev/null || true
  fusermount3 -uz "$UMNT" 2>/dev/null || true
  cleanup
}
trap untrap EXIT
# reconnect_device [SNAPSHOT]: detaches $DEV, restarts the server (over a
# copy of SNAPSHOT when given: a device that lost what it had not flushed)
# and attaches the same loop device again.
reconnect_device() {
  losetup -d "$DEV"
  fusermount3 -uz "$UMNT" 2>/dev/null || true
  [[ -z ${1:-} ]] || cp "$1" "$IMG"
  start_server
  for _ in $(seq 50); do losetup "$DEV" 2>/dev/null | grep -q "(deleted)\|$UMNT" || break; sleep 0.1; done
  losetup --direct-io=off "$DEV" "$UMNT/disk" || die "cannot attach $DEV again"
}
