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
PCIMIRROR=${PCIMIRROR:?set PCIMIRROR}
CACHE=${PCIMIRROR_VM_CACHE:-/var/cache/pcimirror-vm}
skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
[[ -x /bin/busybox ]] || skip "no busybox (apt-get install busybox-static)"
{ ldd /bin/busybox 2>&1 || true; } | grep -q "not a dynamic" || skip "/bin/busybox is not the static build (apt-get install busybox-static)"
command -v gcc >/dev/null || skip "no gcc to build the guest's BAR helper"

WORK=$(mktemp -d /tmp/pcimirror-vm.XXXXXX)
SHMFILE=/dev/shm/pcimirror-vm-$$.ivshmem
trap 'rm -rf "$WORK" "$SHMFILE"' EXIT

# --- the kernel: the package linux-image-amd64 depends on, unpacked once.
mkdir -p "$CACHE"
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[[ -n $PKG ]] || skip "apt-cache knows no linux-image-amd64 (run apt-get update)"
KDIR=$CACHE/$PKG
if [[ ! -d $KDIR/boot ]]; then
  (cd "$CACHE" && rm -f "$PKG"_*.deb && apt-get download "$PKG" >/dev/null 2>&1) \
    || skip "cannot download $PKG from the Debian archive"
  rm -rf "$KDIR.tmp" && dpkg -x "$CACHE/$PKG"_*.deb "$KDIR.tmp" && mv "$KDIR.tmp" "$KDIR"
  rm -f "$CACHE/$PKG"_*.deb
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-*)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KDIR/lib/modules/$KVER

# --- the initramfs: busybox, modules in dependency order, our binaries.
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,lib,lib64,proc,sys,dev,mnt,data,tmp,modules}
cp /bin/busybox "$ROOT/bin/busybox"
declare -A seen=()
order=()
add_module() {  # depth-first: dependencies first
  local name=$1 f dep
  [[ -n ${seen[$name]:-} ]] && return
  seen[$name]=1
  f=$(find "$MODDIR" -name "$name.ko" -o -name "$name.ko.xz" | head -1)
  [[ -n $f ]] || die "module $name not in $PKG"
  for dep in $(modinfo -F depends "$f" | tr ',' ' '); do add_module "$dep"; done
  case $f in
    *.xz) xz -dc "$f" >"$ROOT/modules/$name.ko" ;;
    *) cp "$f" "$ROOT/modules/$name.ko" ;;
  esac
  order+=("$name")
}
for m in virtio_pci virtio_blk fuse; do add_module "$m"; done
printf '%s\n' "${order[@]}" >"$ROOT/modules/order"

strip -o "$ROOT/bin/pcimirror" "$PCIMIRROR"
gcc -O2 -static -o "$ROOT/bin/bar_tool" "$HERE/bar_tool.c"
for lib in $(ldd "$PCIMIRROR" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
  cp -L "$lib" "$ROOT/lib/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/"
cp "$HERE/guest_test.sh" "$ROOT/test.sh"
cat >"$ROOT/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "VMTEST FAIL: insmod $m"; done
for i in $(seq 50); do [ -b /dev/vda ] && [ -c /dev/fuse ] && break; sleep 0.1; done
sh /test.sh
poweroff -f
INIT
chmod +x "$ROOT/init" "$ROOT/test.sh"

# Patterns the guest writes: 8 MiB and 2000 sectors + 17 bytes.
head -c $((8 * 1048576)) /dev/urandom >"$ROOT/data/frames.bin"
head -c $((2000 * 512 + 17)) /dev/urandom >"$ROOT/data/odd.bin"
(cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"

# --- the machine.
truncate -s 256M "$WORK/disk.img"
truncate -s 64M "$SHMFILE"
if [[ -w /dev/kvm ]] && grep -qE 'vmx|svm' /proc/cpuinfo; then
  ACCEL=(-accel kvm -cpu host)
else
  ACCEL=(-accel tcg -cpu max)  # this machine's CPU has no vmx: TCG
fi
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
