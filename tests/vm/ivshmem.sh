#!/usr/bin/env bash
# VM test against a real PCI device: boots Debian's kernel in QEMU with an
# ivshmem-plain device (backed by a host file) and a virtio-blk disk, runs
# tests/vm/guest_test.sh inside, then checks on the host that
#  - the disk image holds, at the extents `status --json` reports, exactly
#    the patterns the guest wrote, mirrored through the bounce path, and
#  - the restore reproduced the patterns in the ivshmem file after the guest
#    had zeroed the BAR.
# Exits 77 (SKIP) only when QEMU cannot run at all, saying why.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/vm_lib.sh"
vm_require_host_tools

WORK=$(mktemp -d /tmp/pcimirror-vm.XXXXXX)
SHMFILE=/dev/shm/pcimirror-vm-$$.ivshmem
trap 'rm -rf "$WORK" "$SHMFILE"' EXIT

vm_kernel
ROOT=$WORK/root
vm_root "$ROOT"
for m in virtio_pci virtio_blk fuse; do vm_module "$m"; done

# Patterns the guest writes: 8 MiB and 2000 sectors + 17 bytes.
head -c $((8 * 1048576)) /dev/urandom >"$ROOT/data/frames.bin"
head -c $((2000 * 512 + 17)) /dev/urandom >"$ROOT/data/odd.bin"
vm_initrd "$HERE/guest_test.sh" "$WORK/initrd.gz"

# --- the machine.
truncate -s 256M "$WORK/disk.img"
truncate -s 64M "$SHMFILE"
vm_accel
echo "booting $KVER with ${ACCEL[*]}"
start=$(date +%s%N)
timeout 540 qemu-system-x86_64 "${ACCEL[@]}" -m 1024 -smp 1 \
  -kernel "$VMLINUZ" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 panic=-1 random.trust_cpu=on quiet" \
  -display none -nic none -monitor none -serial stdio -no-reboot \
  -object memory-backend-file,id=m,share=on,mem-path="$SHMFILE",size=64M \
  -device ivshmem-plain,memdev=m \
  -drive file="$WORK/disk.img",format=raw,if=virtio \
  </dev/null | tee "$WORK/serial.log" | grep --line-buffered -E "VMTEST|pcimirror|synced|restored|bar_tool|^SLICE|^frames|^odd" || true
elapsed=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
echo "VM run took ${elapsed}s"
grep -q "VMTEST PASS" "$WORK/serial.log" || { tail -40 "$WORK/serial.log"; die "guest test did not pass"; }

# --- host-side checks.
JSON=$("$PCIMIRROR" status "$WORK/disk.img" --json)
check_slice() {
  local name=$1 src=$2 off
  [[ $(jq -r --arg n "$name" '.slices[] | select(.name==$n) | .path' <<<"$JSON") == bounce ]] \
    || die "slice $name did not take the bounce path"
  : >"$WORK/$name.disk"
  while read -r start sectors; do
    dd if="$WORK/disk.img" bs=1M skip=$((start * 512)) count=$((sectors * 512)) \
      iflag=skip_bytes,count_bytes status=none >>"$WORK/$name.disk"
  done < <(jq -r --arg n "$name" '.slices[] | select(.name==$n) | .extents[] | "\(.start_sector) \(.sectors)"' <<<"$JSON")
  cmp -n "$(stat -c %s "$src")" "$src" "$WORK/$name.disk" || die "disk image at $name's extents differs"
  off=$(jq -r --arg n "$name" '.slices[] | select(.name==$n) | .offset_bytes' <<<"$JSON")
  cmp -n "$(stat -c %s "$src")" "$src" <(tail -c +$((off + 1)) "$SHMFILE") \
    || die "restore did not reproduce $name in the ivshmem file"
}
check_slice frames "$ROOT/data/frames.bin"
check_slice odd "$ROOT/data/odd.bin"
[[ $(jq -r .region_bytes <<<"$JSON") == $((64 * 1048576)) ]] || die "recorded BAR size"
echo "PASS vm ivshmem (${elapsed}s in the VM)"
