#!/usr/bin/env bash
# Shows that clang's thread-safety analysis bites on the project's own
# annotations: tests/tsa/unguarded.cc must compile with CASE=0 (every lock
# held) and must fail with a -Wthread-safety-analysis error for each other
# CASE (one lock missing or held in the wrong mode). Run by the clang
# -Wthread-safety stage of scripts/dev.sh test.
# Usage: tests/tsa/check.sh [CLANG++]   (exit 77 without clang)
set -euo pipefail
cd "$(dirname "$0")/../.."
cxx=${1:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "SKIP: $cxx not found (scripts/install-deps.sh installs clang)"
  exit 77
fi
out=$(mktemp -d /tmp/pcimirror-tsa.XXXXXX)
trap 'rm -rf "$out"' EXIT
cases=(0 1 2 3 4)
for c in "${cases[@]}"; do
  "$cxx" -std=c++20 -fsyntax-only -Wthread-safety -Werror -I. -DCASE="$c" \
    tests/tsa/unguarded.cc >"$out/$c.log" 2>&1 &
  echo $! >"$out/$c.pid"
done
fail=0
for c in "${cases[@]}"; do
  rc=0
  wait "$(cat "$out/$c.pid")" || rc=$?
  if ((c == 0)); then
    if ((rc != 0)); then
      cat "$out/$c.log"
      echo "FAIL: CASE=0 (locks held) does not compile" >&2
      fail=1
    fi
  elif ((rc == 0)); then
    echo "FAIL: CASE=$c compiled: the analysis missed a lock" >&2
    fail=1
  elif ! grep -q -- '-Wthread-safety-analysis' "$out/$c.log"; then
    cat "$out/$c.log"
    echo "FAIL: CASE=$c failed, but not with a thread-safety error" >&2
    fail=1
  else
    echo "CASE=$c refused: $(grep -m1 -o "error: .*" "$out/$c.log")"
  fi
done
exit "$fail"
