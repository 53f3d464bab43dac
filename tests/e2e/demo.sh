#!/usr/bin/env bash
# `pcimirror demo` runs the whole job and exits 0, leaving nothing behind,
# and its output (the daemon's log lines included) carries no journal
# priority prefixes: "<6>" belongs to the journal only (sd-daemon(3)).
source "$(dirname "$0")/lib.sh"
loops_before=$(losetup -a | grep -vc pcimirror-e2e || true)
# A JOURNAL_STREAM inherited from a service that names another file must
# not turn the prefixes on either.
JOURNAL_STREAM=1:1 "$PCIMIRROR" demo >"$WORK/demo.out" 2>&1 || { cat "$WORK/demo.out"; die "demo failed"; }
cat "$WORK/demo.out"
! grep -nE '^<[0-9]>' "$WORK/demo.out" || die "demo output carries journal priority prefixes"
grep -qE '^pcimirror: info: serving [0-9]+ slices' "$WORK/demo.out" || die "the daemon's start-up line is missing"
[[ $(losetup -a | grep -vc pcimirror-e2e || true) == "$loops_before" ]] || die "demo left a loop device attached"
! ls /dev/shm/pcimirror-demo-* 2>/dev/null || die "demo left region files"
! ls -d /tmp/pcimirror-demo.* 2>/dev/null || die "demo left its work directory"
echo "PASS demo"
