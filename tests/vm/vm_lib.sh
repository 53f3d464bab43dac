# Shared by the VM tests (sourced, not run): the Debian kernel, an initramfs
# built from busybox-static, kernel modules and host binaries with their
# libraries, and the QEMU accelerator. Callers set HERE (their directory)
# and PCIMIRROR (the pcimirror binary) before sourcing it.
PCIMIRROR=${PCIMIRROR:?set PCIMIRROR}
CACHE=${PCIMIRROR_VM_CACHE:-/var/cache/pcimirror-vm}

# A test that cannot run exits 77 (ctest SKIP) saying why; a failure exits 1.
skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }

vm_require_host_tools() {
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
  [[ -x /bin/busybox ]] || skip "no busybox (apt-get install busybox-static)"
  { ldd /bin/busybox 2>&1 || true; } | grep -q "not a dynamic" || skip "/bin/busybox is not the static build (apt-get install busybox-static)"
  command -v gcc >/dev/null || skip "no gcc to build the guest's BAR helper"
}

# Sets VMLINUZ, KVER, MODDIR: the package linux-image-amd64 depends on,
# unpacked once into $CACHE.
vm_kernel() {
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
}

# vm_root DIR: busybox, pcimirror (stripped) with its libraries, bar_tool.
vm_root() {
  ROOT=$1
  mkdir -p "$ROOT"/{bin,lib,lib64,proc,sys,dev,mnt,data,tmp,modules,etc}
  cp /bin/busybox "$ROOT/bin/busybox"
  strip -o "$ROOT/bin/pcimirror" "$PCIMIRROR"
  gcc -O2 -static -o "$ROOT/bin/bar_tool" "$HERE/bar_tool.c"
  vm_libs "$PCIMIRROR"
  cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/"
}

# vm_libs BINARY: copies the shared libraries ldd names into $ROOT/lib.
vm_libs() {
  local lib
  for lib in $(ldd "$1" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
    cp -L "$lib" "$ROOT/lib/"
  done
}

# vm_bin BINARY: a host binary and its libraries into the guest's /bin.
vm_bin() {
  cp -L "$1" "$ROOT/bin/" && vm_libs "$1"
}

declare -A VM_SEEN=()
VM_ORDER=()
# vm_module NAME: the module and its dependencies (depth-first), in load order.
vm_module() {
  local name=$1 f dep
  [[ -n ${VM_SEEN[$name]:-} ]] && return
  VM_SEEN[$name]=1
  f=$(find "$MODDIR" -name "$name.ko" -o -name "$name.ko.xz" | head -1)
  [[ -n $f ]] || die "module $name not in $PKG"
  for dep in $(modinfo -F depends "$f" | tr ',' ' '); do vm_module "$dep"; done
  case $f in
    *.xz) xz -dc "$f" >"$ROOT/modules/$name.ko" ;;
    *) cp "$f" "$ROOT/modules/$name.ko" ;;
  esac
  VM_ORDER+=("$name")
}

# vm_initrd GUEST_SCRIPT OUT: /init loads the modules, waits for /dev/vda and
# /dev/fuse, runs the guest script as /test.sh and powers off.
vm_initrd() {
  printf '%s\n' "${VM_ORDER[@]}" >"$ROOT/modules/order"
  cp "$1" "$ROOT/test.sh"
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
  (cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1) >"$2"
}

# Sets ACCEL: KVM when usable, else TCG.
vm_accel() {
  if [[ -w /dev/kvm ]] && grep -qE 'vmx|svm' /proc/cpuinfo; then
    ACCEL=(-accel kvm -cpu host)
  else
    ACCEL=(-accel tcg -cpu max)  # this machine's CPU has no vmx: TCG
  fi
}
