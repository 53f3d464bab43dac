#!/usr/bin/env bash
# The crash-replay harness of tests/crash with a large budget (default
# 1,000,000 states; CI runs 12,000). Usage: bench/crash_replay.sh [BUILD_DIR] [STATES]
set -euo pipefail
BUILD=${1:-build}
STATES=${2:-1000000}
start=$(date +%s)
PCIMIRROR_CRASH_STATES=$STATES "$BUILD/tests/crash/crash_replay_test" 2>&1 | grep -vE '^pcimirror: (error|warning|info|debug): '
echo "wall time: $(($(date +%s) - start)) s"
