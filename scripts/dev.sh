#!/usr/bin/env bash
# The one entry point behind the README's two commands and CI:
#   scripts/dev.sh demo   install dependencies, build, run `pcimirror demo`
#   scripts/dev.sh test   install dependencies, build, run every test
# Run as root on Debian 12. Dependencies come from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
case "$what" in
  demo|test) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

bash scripts/install-deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPCIMIRROR_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

case "$what" in
  demo)
    exec "$BUILD/pcimirror" demo
    ;;
  test)
    cd "$BUILD"
    # Unit tests in parallel; tests that mount, attach loop devices or boot
    # a VM run one at a time (RUN_SERIAL).
    exec ctest --output-on-failure -j"$(nproc)" --timeout 900
    ;;
esac
