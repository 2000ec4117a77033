#!/bin/sh
# Runs one fuzz target for a while, as fuzz/README.md describes:
#   fuzz/run.sh TARGET DICT SECONDS [LIBFUZZER FLAGS...]
# from the repository root; corpus in fuzz/corpus/TARGET, crashers in
# fuzz/artifacts/TARGET, libFuzzer's log in fuzz/logs/TARGET.log.
set -eu
target=$1 dict=$2 seconds=$3
shift 3
cd "$(dirname "$0")"
mkdir -p "corpus/$target" logs
exec cargo +nightly fuzz run --debug-assertions "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -dict="dicts/$dict.dict" -print_final_stats=1 "$@" > "logs/$target.log" 2>&1
