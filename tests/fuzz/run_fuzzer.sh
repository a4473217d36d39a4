#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan + coverage) in
# build-fuzz/ and fuzzes for SECONDS (default 60) from the committed seed
# corpus; new inputs go to build-fuzz/corpus, crashes to build-fuzz/.
#   tests/fuzz/run_fuzzer.sh [SECONDS]
set -euo pipefail
seconds="${1:-60}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$repo/build-fuzz"
cmake -S "$repo" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DATTN_FUZZ=ON -DATTN_WERROR=OFF -DATTN_SANITIZE=address,undefined >/dev/null
cmake --build "$out" --target request_fuzzer -j"${JOBS:-2}" >/dev/null
mkdir -p "$out/corpus"
cd "$out"
# Leaks inside protobuf's and absl's static state are not findings.
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  ./bin/request_fuzzer -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  "$out/corpus" "$repo/tests/fuzz/corpus" 2>&1 | tail -25
echo "fuzz: ${seconds} s without a crash"
