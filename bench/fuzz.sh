#!/usr/bin/env bash
# Fuzzes the metadata decoders with libFuzzer under ASan and UBSan for a
# fixed budget of executions (default 10^7), starting from the committed
# seed corpus. Prints libFuzzer's final stats (exec/s) and any finding.
# Usage: bench/fuzz.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10000000}
OUT=${FUZZ_OUT:-build-fuzz}
mkdir -p "$OUT/corpus"
clang++ -std=c++20 -O1 -g -I. -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined \
  tests/fuzz/metadata_fuzz.cc fs/format.cc fs/crc32c.cc io/result.cc \
  -lisal -o "$OUT/metadata_fuzz"
cp tests/fuzz/corpus/* "$OUT/corpus/"
start=$(date +%s)
"$OUT/metadata_fuzz" -runs="$RUNS" -max_len=8192 -print_final_stats=1 \
  -artifact_prefix="$OUT/" "$OUT/corpus" 2>&1 | tail -25
echo "wall time: $(($(date +%s) - start)) s; findings: $(ls "$OUT" | grep -cE '^(crash|leak|timeout|oom)-' || true)"
