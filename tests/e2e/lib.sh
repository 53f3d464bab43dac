# Shared helpers for the end-to-end tests: real loop devices, real FUSE
# mounts, real cp/dd. Source it; it sets `set -euo pipefail` and a cleanup
# trap. A test that cannot run here exits 77 (ctest SKIP) with the reason.
set -euo pipefail

PCIMIRROR=${PCIMIRROR:?set PCIMIRROR to the pcimirror binary}

skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }
log() { echo "--- $*"; }

[[ $(id -u) -eq 0 ]] || skip "needs root for loop devices and FUSE mounts"
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
command -v losetup >/dev/null || skip "no losetup"
command -v fusermount3 >/dev/null || skip "no fusermount3 (apt-get install fuse3)"

WORK=$(mktemp -d /tmp/pcimirror-e2e.XXXXXX)
SHM=/dev/shm/pcimirror-e2e-$$

# Everything a test creates lives under $WORK (images, mount points) or
# $SHM.*, so cleanup finds it there; helpers run in $(...) subshells and
# cannot record it in variables.
cleanup() {
  local m img l
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts); do
    fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  # Let daemons release their devices before detaching.
  for _ in $(seq 50); do pgrep -f "pcimirror.*$WORK" >/dev/null || break; sleep 0.1; done
  pkill -9 -f "pcimirror.*$WORK" 2>/dev/null || true
  for img in "$WORK"/*.img; do
    [[ -e $img ]] || continue
    for l in $(losetup -j "$img" | cut -d: -f1); do losetup -d "$l" 2>/dev/null || true; done
  done
  rm -rf "$WORK" "$SHM".*
}
trap cleanup EXIT

# new_loop SIZE: a sparse image attached as a loop device; prints the device.
new_loop() {
  local img
  img=$(mktemp "$WORK/disk.XXXXXX.img")
  truncate -s "$1" "$img"
  losetup --find --show --direct-io=on "$img" || skip "losetup failed (no free loop device?)"
}

# new_mountpoint NAME: prints a fresh directory under $WORK.
new_mountpoint() {
  mkdir -p "$WORK/$1"
  echo "$WORK/$1"
}

# wait_unmounted MOUNTPOINT DEVICE: the mount is gone and the daemon has
# released the device (it holds an exclusive lock while serving).
wait_released() {
  local dev=$1
  for _ in $(seq 100); do
    if ! pgrep -f "pcimirror mount $dev " >/dev/null && ! pgrep -f "pcimirror $dev " >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  die "daemon for $dev did not exit"
}

# mirror_of DEVICE SLICE OUT: reads SLICE's committed mirror from the raw
# device at the extents that `status --json` reports, cut to its length.
mirror_of() {
  local dev=$1 slice=$2 out=$3
  local json
  json=$("$PCIMIRROR" status "$dev" --json)
  local len
  len=$(jq -r --arg n "$slice" '.slices[] | select(.name==$n) | .length_bytes' <<<"$json")
  [[ -n $len ]] || die "slice $slice not in status"
  : >"$out.raw"
  while read -r start sectors; do
    dd if="$dev" bs=1M skip=$((start * 512)) count=$((sectors * 512)) iflag=direct,skip_bytes,count_bytes status=none >>"$out.raw"
  done < <(jq -r --arg n "$slice" '.slices[] | select(.name==$n) | .extents[] | "\(.start_sector) \(.sectors)"' <<<"$json")
  head -c "$len" "$out.raw" >"$out"
  rm -f "$out.raw"
}

# slice_field DEVICE SLICE FIELD
slice_field() {
  "$PCIMIRROR" status "$1" --json | jq -r --arg n "$2" ".slices[] | select(.name==\$n) | .$3"
}

# random_file PATH SIZE_MIB
random_file() { head -c "$(($2 * 1048576))" /dev/urandom >"$1"; }

device_sum() { md5sum <"$1" | cut -d' ' -f1; }
