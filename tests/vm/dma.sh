#!/usr/bin/env bash
# VM test of DMA regions (issue 14) through a real character-device path:
# one boot of Debian's kernel in QEMU with the cuse module and a virtio-blk
# disk; in the guest tests/vm/cuse_xdma.c (built here against libfuse3)
# serves /dev/xdma0_c2h_0 and /dev/xdma0_h2c_0 like the XDMA driver, and
# tests/vm/guest_dma.sh runs format, mount, dd, sync, restore and an EIO
# injected mid-sync against them.
# Exits 77 (SKIP) when QEMU, libfuse3's development files or a guest tool is
# missing, saying which.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/vm_lib.sh"
vm_require_host_tools
pkg-config --exists fuse3 || skip "no libfuse3 development files to build cuse_xdma (apt-get install libfuse3-dev)"

WORK=$(mktemp -d /tmp/pcimirror-vm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

vm_kernel
ROOT=$WORK/root
vm_root "$ROOT"
# shellcheck disable=SC2046
gcc -O2 -Wall -o "$WORK/cuse_xdma" "$HERE/cuse_xdma.c" $(pkg-config --cflags --libs fuse3) \
  || die "cannot build cuse_xdma"
vm_bin "$WORK/cuse_xdma"
for m in virtio_pci virtio_blk fuse cuse; do vm_module "$m"; done
vm_initrd "$HERE/guest_dma.sh" "$WORK/initrd.gz"
truncate -s 128M "$WORK/disk.img"

vm_accel
echo "booting $KVER with ${ACCEL[*]}"
start=$(date +%s%N)
timeout 540 qemu-system-x86_64 "${ACCEL[@]}" -m 1024 -smp 1 \
  -kernel "$VMLINUZ" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 panic=-1 random.trust_cpu=on quiet" \
  -display none -nic none -serial stdio -no-reboot \
  -drive file="$WORK/disk.img",format=raw,if=virtio \
  </dev/null | tee "$WORK/serial.log" \
  | grep -a --line-buffered -E 'VMTEST|pcimirror|cuse_xdma|xdma|cmp|generations|"path"' || true
[[ -z ${PCIMIRROR_VM_LOG:-} ]] || cp "$WORK/serial.log" "$PCIMIRROR_VM_LOG"
elapsed=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
echo "VM run took ${elapsed}s"
grep -aq "VMTEST PASS" "$WORK/serial.log" || { tail -40 "$WORK/serial.log"; die "guest test did not pass"; }
echo "PASS vm dma (${elapsed}s in the VM)"
