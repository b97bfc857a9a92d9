#!/bin/sh
# All benchmarks (`make bench` runs `sh bench/run.sh build/ftc`). Each appends its table to bench/RESULTS.md.
# Add a benchmark: one line below that runs its script with the build directory or ftc binary.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ftc=${1:-$here/../build/ftc}
build=$(cd "$(dirname "$ftc")" && pwd)

sh "$here/run_matmul.sh" "$build"
sh "$here/run_tokenizer.sh" "$build"
sh "$here/train_bench.sh" "$ftc"
