#!/usr/bin/env bash
# VM test of what happens when the mirror target or the memory goes away
# (issue 13). One boot of Debian's kernel in QEMU with an ivshmem-plain device
# (id shm0, backed by a host file), a virtio-blk disk, and in the guest
# setpci, the nbd module, nbd-server and nbd-client. tests/vm/guest_liveness.sh
# runs inside; it prints "VMTEST host: zero-ivshmem" or "VMTEST host:
# device_del" when the host must act, and this script, reading the serial
# console line by line, zeroes the ivshmem backing file (a board reset) or
# sends device_del to QEMU's monitor (a hot-unplug).
# Exits 77 (SKIP) when QEMU or a guest tool is missing, saying which.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/vm_lib.sh"
vm_require_host_tools
SETPCI=$(command -v setpci || true)
NBD_SERVER=$(command -v nbd-server || true)
NBD_CLIENT=$(command -v nbd-client || true)
[[ -n $SETPCI ]] || skip "no setpci for the guest (apt-get install pciutils)"
[[ -n $NBD_SERVER ]] || skip "no nbd-server for the guest (apt-get install nbd-server)"
[[ -n $NBD_CLIENT ]] || skip "no nbd-client for the guest (apt-get install nbd-client)"

WORK=$(mktemp -d /tmp/pcimirror-vm.XXXXXX)
SHMFILE=/dev/shm/pcimirror-vm-$$.ivshmem
DRAIN=
cleanup() {
  [[ -z $DRAIN ]] || kill "$DRAIN" 2>/dev/null || true
  rm -rf "$WORK" "$SHMFILE"
}
trap cleanup EXIT

vm_kernel
ROOT=$WORK/root
vm_root "$ROOT"
for m in virtio_pci virtio_blk fuse nbd; do vm_module "$m"; done
for b in "$SETPCI" "$NBD_SERVER" "$NBD_CLIENT"; do vm_bin "$b"; done
vm_initrd "$HERE/guest_liveness.sh" "$WORK/initrd.gz"

truncate -s 256M "$WORK/disk.img"
truncate -s 64M "$SHMFILE"
# The monitor on two FIFOs: QEMU opens mon.in for reading and mon.out for
# writing, so both need their other end open first.
mkfifo "$WORK/mon.in" "$WORK/mon.out"
cat "$WORK/mon.out" >"$WORK/mon.log" &
DRAIN=$!
exec 9<>"$WORK/mon.in"

# act LINE: the host's part of a scenario.
act() {
  case $1 in
    *"VMTEST host: zero-ivshmem"*)
      dd if=/dev/zero of="$SHMFILE" bs=1M count=64 conv=notrunc status=none
      echo "host: zeroed $SHMFILE (a board reset)" ;;
    *"VMTEST host: device_del"*)
      echo "device_del shm0" >&9
      echo "host: device_del shm0 sent to the monitor" ;;
  esac
}

vm_accel
echo "booting $KVER with ${ACCEL[*]}"
start=$(date +%s%N)
timeout 540 qemu-system-x86_64 "${ACCEL[@]}" -m 1024 -smp 1 \
  -kernel "$VMLINUZ" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 panic=-1 random.trust_cpu=on quiet" \
  -display none -nic none -monitor pipe:"$WORK/mon" -serial stdio -no-reboot \
  -object memory-backend-file,id=m,share=on,mem-path="$SHMFILE",size=64M \
  -device ivshmem-plain,memdev=m,id=shm0 \
  -drive file="$WORK/disk.img",format=raw,if=virtio \
  </dev/null | tee "$WORK/serial.log" | while IFS= read -r line; do
    line=${line%$'\r'}
    case $line in
      *VMTEST*|*pcimirror*|*synced*|*restored*|*bar_tool*|*nbd*|*cmp*|*setpci*) echo "$line" ;;
    esac
    act "$line"
  done || true
[[ -z ${PCIMIRROR_VM_LOG:-} ]] || cp "$WORK/serial.log" "$PCIMIRROR_VM_LOG"
elapsed=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
echo "VM run took ${elapsed}s"
echo "monitor: $(tr -d '\r' <"$WORK/mon.log" | grep -v '^(qemu)' | tr '\n' ' ' | tail -c 400)"
grep -q "VMTEST PASS" "$WORK/serial.log" || { tail -40 "$WORK/serial.log"; die "guest test did not pass"; }
skipped=$(grep -a "VMTEST SKIP-SCENARIO" "$WORK/serial.log" | tr -d '\r' || true)
findings=$(grep -a "VMTEST FINDING" "$WORK/serial.log" | tr -d '\r' || true)
[[ -z $findings ]] || echo "$findings"
[[ -z $skipped ]] || echo "$skipped"
echo "PASS vm liveness (${elapsed}s in the VM)"
