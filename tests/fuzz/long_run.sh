#!/usr/bin/env bash
# The documented long fuzz run of the device-side protocol (docs/fuzzing.md, section 3):
# build the harness with libFuzzer + ASan + UBSan, copy the seed corpus, run RUNS
# executions (default 10 million) in one process, print libFuzzer's final statistics.
#   bash tests/fuzz/long_run.sh [RUNS] [WORKDIR]
# Exits non-zero if the fuzzer finds anything (the crash input is left in WORKDIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
runs="${1:-10000000}"
work="${2:-$(mktemp -d /tmp/tg-fuzz-XXXXXX)}"
mkdir -p "$work"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror -I "$root/firmware_templates/common" \
    "$root/tests/fuzz/fuzz_protocol.c" "$root/firmware_templates/common/tg_protocol.c" \
    -o "$work/fuzz_protocol"
rm -rf "$work/corpus"
cp -r "$root/tests/fuzz/corpus" "$work/corpus"
echo "fuzzing in $work: $runs executions (log: $work/log.txt)" >&2
cd "$work"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ./fuzz_protocol corpus -runs="$runs" -max_len=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" > log.txt 2>&1 || { tail -50 log.txt; exit 1; }
grep -E "^Done|^stat::" log.txt
grep "cov:" log.txt | tail -1
