#!/usr/bin/env bash
# Installs everything pcimirror needs to build, test and benchmark, from
# Debian 12's archive. Idempotent; run as root. Used by both README commands
# and by .ci/run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(
  build-essential cmake pkg-config git
  libfuse3-dev fuse3
  liburing-dev
  libpciaccess-dev
  libcli11-dev nlohmann-json3-dev
  libisal-dev
  libblkid-dev
  libsystemd-dev
  libupsclient-dev nut-client nut-server
  libgtest-dev libgmock-dev libbenchmark-dev
  util-linux fio xxd jq psmisc pci.ids
  qemu-system-x86 busybox-static cpio kmod pciutils nbd-server nbd-client
  clang libclang-rt-14-dev
  attr python3 systemd gnuplot-nox rsync xz-utils
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi
