#!/usr/bin/env bash
# The bounce pool bounds the daemon's memory: while it mirrors a 1 GiB slice
# through the pool, its anonymous RSS (heap + bounce buffers; the region's
# shared pages are RssShmem) stays far below the slice size. Also: a pool
# that RLIMIT_MEMLOCK cannot hold is refused with a message naming the limit.
source "$(dirname "$0")/lib.sh"

DEV=$(new_loop 2600M)
MNT=$(new_mountpoint mnt)
"$PCIMIRROR" format "$DEV" --memory "file=$SHM.ram,size=1G" --slice big:0:1G
for mode in always auto; do
  "$PCIMIRROR" mount "$DEV" "$MNT" -o "bounce=$mode"
  pid=$(pgrep -f "pcimirror mount $DEV ")
  peak=0
  "$PCIMIRROR" sync "$MNT" big &
  sync_pid=$!
  while kill -0 $sync_pid 2>/dev/null; do
    kb=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status)
    ((kb > peak)) && peak=$kb
    sleep 0.02
  done
  wait $sync_pid || die "sync failed"
  path=$(slice_field "$DEV" big path)
  log "bounce=$mode: path $path, peak RssAnon $((peak / 1024)) MiB while mirroring 1 GiB"
  # A sanitizer's shadow memory for the 1 GiB region counts as RssAnon
  # (ASan: about 1/8 of what the process touches), so the bound holds only
  # for plain builds; sanitizer builds keep every other assertion.
  if [[ -n ${PCIMIRROR_SANITIZE:-} ]]; then
    log "bound not asserted in a $PCIMIRROR_SANITIZE build (shadow memory)"
  else
    ((peak < 64 * 1024)) || die "daemon anonymous RSS reached $((peak / 1024)) MiB"
  fi
  fusermount3 -u "$MNT"
  wait_released "$DEV"
done
[[ $(slice_field "$DEV" big generation) == 2 ]] || die "generation"

log "RLIMIT_MEMLOCK too small for the pool: refused, naming the limit"
command -v setpriv >/dev/null || skip "no setpriv"
before=$(device_sum "$DEV")
if out=$(ulimit -l 64 && setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock \
    "$PCIMIRROR" restore "$DEV" --memory "file=$SHM.other,size=1G" 2>&1); then
  die "restore with a 64 KiB memlock limit succeeded"
fi
echo "$out"
grep -q "RLIMIT_MEMLOCK is 65536 bytes" <<<"$out" || die "message: $out"
[[ $(device_sum "$DEV") == "$before" ]] || die "device changed"
echo "PASS pool_bounds"
