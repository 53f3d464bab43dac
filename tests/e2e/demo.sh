#!/usr/bin/env bash
# `pcimirror demo` runs the whole job and exits 0, leaving nothing behind.
source "$(dirname "$0")/lib.sh"
loops_before=$(losetup -a | grep -vc pcimirror-e2e || true)
"$PCIMIRROR" demo
[[ $(losetup -a | grep -vc pcimirror-e2e || true) == "$loops_before" ]] || die "demo left a loop device attached"
! ls /dev/shm/pcimirror-demo-* 2>/dev/null || die "demo left region files"
! ls -d /tmp/pcimirror-demo.* 2>/dev/null || die "demo left its work directory"
echo "PASS demo"
