#!/usr/bin/env bash
# The .deb: built with CPack, installed with dpkg -i; then pcimirror
# --version, the man pages, systemd-analyze verify of the installed unit, and
# `mount -a` of an fstab line in a private namespace with the installed
# binary (mount.fuse3 finds /usr/sbin/pcimirror); finally purged cleanly.
source "$(dirname "$0")/lib.sh"
BUILD=${PCIMIRROR_BUILD_DIR:?set PCIMIRROR_BUILD_DIR}
command -v dpkg >/dev/null || skip "no dpkg"
if dpkg -s pcimirror >/dev/null 2>&1; then
  skip "a pcimirror package is already installed here; not touching it"
fi
trap 'dpkg --purge pcimirror >/dev/null 2>&1 || true; cleanup' EXIT

log "cpack"
(cd "$WORK" && cpack --config "$BUILD/CPackConfig.cmake" -B "$WORK/pkg" >/dev/null)
DEB=$(ls "$WORK"/pkg/pcimirror_*.deb)
dpkg-deb -f "$DEB" Package Version Depends
log "dpkg -i"
dpkg -i "$DEB" >/dev/null
/usr/sbin/pcimirror --version | grep -q "pcimirror 0\." || die "--version"
man -w pcimirror >/dev/null || die "pcimirror(8) not installed"
man -w 5 pcimirror.conf >/dev/null || die "pcimirror.conf(5) not installed"
[[ -f /usr/share/bash-completion/completions/pcimirror ]] || die "bash completion"
[[ -f /usr/share/doc/pcimirror/example.conf ]] || die "example config"
UNIT=$(dpkg -L pcimirror | grep 'pcimirror@.service$')
if command -v systemd-analyze >/dev/null; then
  cp "$UNIT" "$WORK/pcimirror@lab.service"
  systemd-analyze verify "$WORK/pcimirror@lab.service" || die "systemd-analyze verify of the installed unit"
fi
log "fstab with the installed binary"
PCIMIRROR=/usr/sbin/pcimirror PCIMIRROR_INSTALLED=1 bash "$(dirname "$0")/fstab.sh" | tail -1 \
  | grep -q "PASS fstab" || die "fstab with the installed package"
log "dpkg --purge"
dpkg --purge pcimirror >/dev/null
[[ ! -e /usr/sbin/pcimirror && ! -e $UNIT ]] || die "files left after purge"
! dpkg -s pcimirror >/dev/null 2>&1 || die "still registered"
echo "PASS package"
