#!/usr/bin/env bash
# The one entry point behind the README's two commands and CI:
#   scripts/dev.sh demo   install dependencies, build, run `pcimirror demo`
#   scripts/dev.sh test   install dependencies, build, run every test, then
#                         a clang build with -Wthread-safety -Werror that
#                         checks the lock annotations (io/thread_annotations.h)
#                         and that the analysis refuses a missing lock
#                         (tests/tsa/check.sh), then
#                         the sanitizer builds: ASan+UBSan over the unit,
#                         crash, e2e and bad-input tests, and TSan over the
#                         multi-threaded engine tests and the race test on a
#                         real mount (tests/e2e/race.sh), and last checks that
#                         nothing left untracked files in the tree
#                         (scripts/check-tree.sh)
# Run as root on Debian 12. PCIMIRROR_QUICK=1 skips the sanitizer builds
# (not the clang build: it takes about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
case "$what" in
  demo|test) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

bash scripts/install-deps.sh
BUILD=${BUILD_DIR:-build}
JOBS=$(nproc)
configure() {  # configure DIR [CMAKE ARGS...]
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPCIMIRROR_WERROR=ON "$@" >/dev/null
}
configure "$BUILD"
cmake --build "$BUILD" -j"$JOBS"

if [[ $what == demo ]]; then
  exec "$BUILD/pcimirror" demo
fi

started=$(date +%s)
stage() { echo; echo "=== $* ($(($(date +%s) - started)) s)"; }
# The untracked files before any test ran, so the final check can say which
# ones the run left (scripts/check-tree.sh fails on any).
untracked_before=$(mktemp /tmp/pcimirror-untracked.XXXXXX)
trap 'rm -f "$untracked_before"' EXIT
git ls-files --others --exclude-standard >"$untracked_before" 2>/dev/null || true
check_tree() {
  stage "tree: no untracked files left behind"
  bash scripts/check-tree.sh --before "$untracked_before"
}

stage "tests: unit, fuzz corpus, e2e, crash, badinput, vm"
(cd "$BUILD" && ctest --output-on-failure -j"$JOBS" --timeout 900)

stage "clang -Wthread-safety: build with the lock annotations checked"
tsa_started=$(date +%s)
# The libraries and the binary only (tests and benchmarks carry no locks of
# their own), without optimisation or debug info: the analysis runs in the
# front end.
configure build-tsa -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None \
  -DPCIMIRROR_THREAD_SAFETY=ON -DPCIMIRROR_BUILD_TESTS=OFF -DPCIMIRROR_BUILD_BENCH=OFF
cmake --build build-tsa -j"$JOBS" --target pcimirror
bash tests/tsa/check.sh clang++
echo "clang -Wthread-safety stage: $(($(date +%s) - tsa_started)) s"

if [[ ${PCIMIRROR_QUICK:-0} == 1 ]]; then
  check_tree
  exit 0
fi

stage "ASan + UBSan: unit, crash, e2e, badinput"
# Sanitizer builds: -O1 (what the ASan and TSan docs advise) and line
# tables only (-g1: reports keep file:line), which compile in far less time
# than RelWithDebInfo's -O2 -g on this 2-core machine.
sanitizer_flags=(-DCMAKE_BUILD_TYPE=None "-DCMAKE_CXX_FLAGS=-O1 -g1")
configure build-asan "${sanitizer_flags[@]}" -DPCIMIRROR_SANITIZE=address,undefined -DPCIMIRROR_BUILD_BENCH=OFF
cmake --build build-asan -j"$JOBS"
logs=$PWD/build-asan/sanitizer-logs
rm -rf "$logs" && mkdir -p "$logs"
# log_path: the FUSE daemon detaches from the terminal, so reports go to
# files, and any file fails the stage.
rc=0
# Fewer crash states and SIGKILLs than the plain run (12,000 and 50), which
# covers the crash model; here they look for memory errors on those paths.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:log_path=$logs/asan \
  UBSAN_OPTIONS=print_stacktrace=1:log_path=$logs/ubsan \
  PCIMIRROR_CRASH_STATES=3000 PCIMIRROR_KILLS=15 \
  ctest --output-on-failure -j"$JOBS" --timeout 900 -L "unit|crash|e2e|badinput") || rc=$?
if compgen -G "$logs/*" >/dev/null; then
  cat "$logs"/*
  echo "sanitizer reports above" >&2
  exit 1
fi
((rc == 0)) || exit "$rc"

stage "TSan: the multi-threaded engine tests, the race test on a real mount"
configure build-tsan "${sanitizer_flags[@]}" -DPCIMIRROR_SANITIZE=thread -DPCIMIRROR_BUILD_BENCH=OFF
cmake --build build-tsan -j"$JOBS" --target concurrency_test mirror_test crash_replay_test pcimirror
supp=$PWD/tests/tsan.supp
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$supp" PCIMIRROR_CRASH_STATES=2000 \
  ctest --output-on-failure -j"$JOBS" -R "^(Concurrency|MirrorTest|CrashReplay)\.")
# The race test's daemon and CLI commands are TSan builds too; log_path, as
# in the ASan stage, so any report file fails the stage.
logs=$PWD/build-tsan/sanitizer-logs
rm -rf "$logs" && mkdir -p "$logs"
rc=0
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$supp log_path=$logs/tsan" \
  RACE_SECONDS=${RACE_SECONDS:-10} ctest --output-on-failure -L race) || rc=$?
if compgen -G "$logs/*" >/dev/null; then
  cat "$logs"/*
  echo "ThreadSanitizer reports above" >&2
  exit 1
fi
((rc == 0)) || exit "$rc"
check_tree
stage "all tests passed"
