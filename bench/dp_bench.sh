#!/bin/bash
# Data parallel on one machine (docs/distributed.md): 2 ranks x 1 thread (mpirun -np 2, FTC_THREADS=1) against
# 1 process x 2 threads (FTC_THREADS=2), the same run (same global batch, same steps), alternated DP_RUNS times.
#
#   bash bench/dp_bench.sh [FTC_BIN]        (default build/ftc)
#
# Shapes: MiniLM full fine-tuning on classify (pre-tokenized, 24..64 tokens, global batch 16) and gpt2-small full
# fine-tuning on causal-lm (random weights from `ftc init`, 128-token sequences, global batch 4): 124M weights,
# a 497 MB gradient all-reduce per step. Figures per run: tokens/s (metrics.jsonl's tok_s at the last step: every
# rank's tokens over this process's wall time since its first step) and, for the 2 ranks, rank 0's seconds in the
# gradient all-reduce per step (dp_comm_s) and waiting before it for the slower rank (dp_wait_s). Medians over the runs
# go to bench/RESULTS.md (DP_RESULTS=FILE elsewhere, DP_RESULTS=- only prints).
# DP_OVERLAP=ab: the 2 ranks twice per run, the gradient all-reduce after the backward (FTC_DP_OVERLAP=0) then
# overlapped with it (the default), alternated, with the on/off ratio and all-reduce seconds of each (for the overlap:
# seconds starting buckets, progressing them and waiting for them, outside the backward's compute); DP_ONE=0 leaves
# out the 1 x 2 threads peer.
# Environment: DP_STEPS (default 6), DP_RUNS (default 3), DP_SHAPES (minilm,gpt2: which), BENCH_MODELS (where the
# gpt2-small weights are kept; default build/bench-models), BENCH_NOTES (the row's note on the machine's load).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
ftc=$(cd "$(dirname "${1:-$root/build/ftc}")" && pwd)/$(basename "${1:-$root/build/ftc}")
steps=${DP_STEPS:-6}
runs=${DP_RUNS:-3}
shapes=${DP_SHAPES:-minilm,gpt2}
models=${BENCH_MODELS:-$root/build/bench-models}
results=${DP_RESULTS:-$root/bench/RESULTS.md}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dp_bench.XXXXXX") # gpt2-small writes a 1.5 GB checkpoint: TMPDIR on a big disk
trap 'rm -rf "$tmp"' EXIT
export OMPI_MCA_orte_tmpdir_base="$tmp" # Open MPI's session directory: its own, not the one other mpiruns share
command -v mpirun >/dev/null || { echo "dp_bench: mpirun not found (make deps)"; exit 1; }
MPI=(mpirun -np 2 --bind-to core)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)

. "$root/bench/dp_common.sh" # figures, median

rows=()
ab=${DP_OVERLAP:-}
one=${DP_ONE:-1}
run_shape() { # label, then the ftc train arguments
  local label=$1; shift
  : >"$tmp/one"; : >"$tmp/two"; : >"$tmp/comm"; : >"$tmp/wait"; : >"$tmp/ov"; : >"$tmp/ovcomm"
  for r in $(seq 1 "$runs"); do
    rm -rf "$tmp/r1" "$tmp/r2" "$tmp/r3"
    if [ "$ab" = ab ]; then
      FTC_DP_OVERLAP=0 FTC_THREADS=1 "${MPI[@]}" -x FTC_DP_OVERLAP "$ftc" train "$@" --out "$tmp/r2" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
      FTC_DP_OVERLAP=1 FTC_THREADS=1 "${MPI[@]}" -x FTC_DP_OVERLAP "$ftc" train "$@" --out "$tmp/r3" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
      t1=0
      [ "$one" = 0 ] || { FTC_THREADS=2 "$ftc" train "$@" --out "$tmp/r1" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
                          read -r t1 _ _ < <(figures "$tmp/r1/metrics.jsonl"); }
      read -r t2 c2 w2 < <(figures "$tmp/r2/metrics.jsonl")
      read -r t3 c3 _ < <(figures "$tmp/r3/metrics.jsonl")
      echo "$label run $r: 1 x 2 threads $t1 tok/s; 2 ranks overlap off $t2 tok/s (all-reduce $c2 s/step, wait $w2 s/step), on $t3 tok/s (all-reduce $c3 s/step)" >&2
      echo "$t1" >>"$tmp/one"; echo "$t2" >>"$tmp/two"; echo "$c2" >>"$tmp/comm"; echo "$w2" >>"$tmp/wait"
      echo "$t3" >>"$tmp/ov"; echo "$c3" >>"$tmp/ovcomm"
      continue
    fi
    FTC_THREADS=2 "$ftc" train "$@" --out "$tmp/r1" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    FTC_THREADS=1 "${MPI[@]}" "$ftc" train "$@" --out "$tmp/r2" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    read -r t1 _ _ < <(figures "$tmp/r1/metrics.jsonl")
    read -r t2 c2 w2 < <(figures "$tmp/r2/metrics.jsonl")
    echo "$label run $r: 1 x 2 threads $t1 tok/s; 2 ranks x 1 thread $t2 tok/s, all-reduce $c2 s/step, wait $w2 s/step" >&2
    echo "$t1" >>"$tmp/one"; echo "$t2" >>"$tmp/two"; echo "$c2" >>"$tmp/comm"; echo "$w2" >>"$tmp/wait"
  done
  local m1 m2 mc mw
  m1=$(median <"$tmp/one"); m2=$(median <"$tmp/two"); mc=$(median <"$tmp/comm"); mw=$(median <"$tmp/wait")
  if [ "$ab" = ab ]; then
    local m3 mc3
    m3=$(median <"$tmp/ov"); mc3=$(median <"$tmp/ovcomm")
    rows+=("$(awk -v l="$label" -v a="$m1" -v b="$m2" -v c="$mc" -v w="$mw" -v d="$m3" -v e="$mc3" -v n="$runs" 'BEGIN {
      printf "| %s | %s | %.0f | %.0f | %.2f | %.3f s + %.3f s | %.3f s | %d |", l, (a > 0 ? sprintf("%.0f", a) : "-"), b, d, d / b, c, w, e, n }')")
    return
  fi
  rows+=("$(awk -v l="$label" -v a="$m1" -v b="$m2" -v c="$mc" -v w="$mw" -v n="$runs" 'BEGIN {
    printf "| %s | %.0f | %.0f | %.2f | %.3f s | %.3f s | %d |", l, a, b, b / a, c, w, n }')")
}

common=(--method full --no-lp-ft --max-steps "$steps" --warmup 0 --log-every 1 --save-only-model --quiet --samples 0)
if [[ $shapes == *minilm* ]]; then
  minilm=$(sh "$root/scripts/find-minilm.sh")
  [ -n "$minilm" ] || { echo "dp_bench: MiniLM not installed (make deps)"; exit 1; }
  awk 'BEGIN { srand(7); for (i = 0; i < 256; i++) { c = i % 4; n = 24 + int(rand() * 40); s = "101";
    for (t = 0; t < n; t++) s = s ", " (2000 + int(rand() * 20000)); printf "{\"input_ids\": [%s, 102], \"label\": %d}\n", s, c } }' \
    >"$tmp/cls.jsonl"
  run_shape "MiniLM classify full, batch 16 (22.7M weights, 91 MB all-reduce)" --model "$minilm" --task classify \
    --data "$tmp/cls.jsonl" --batch 16 --lr 5e-5 "${common[@]}"
fi
if [[ $shapes == *gpt2* ]]; then
  if [ ! -f "$models/gpt2-small/model.safetensors" ]; then
    mkdir -p "$models"
    "$ftc" init --config "$root/bench/configs/gpt2-small.json" --out "$models/gpt2-small" >/dev/null
  fi
  awk 'BEGIN { srand(8); for (i = 0; i < 64; i++) { s = "50256"; for (t = 0; t < 127; t++) s = s ", " int(rand() * 50000);
    printf "{\"input_ids\": [%s]}\n", s } }' >"$tmp/lm.jsonl"
  run_shape "gpt2-small causal-lm full, batch 4 x 128 (124M weights, 497 MB all-reduce)" --model "$models/gpt2-small" \
    --task causal-lm --data "$tmp/lm.jsonl" --batch 4 --lr 1e-4 "${common[@]}"
fi

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo
  if [ "$ab" = ab ]; then
  echo "### Data parallel: the gradient all-reduce overlapped with the backward vs after it, 2 ranks x 1 thread ($(date -u +%Y-%m-%d), $commit)"
  else
  echo "### Data parallel on one machine: 2 ranks x 1 thread vs 1 process x 2 threads ($(date -u +%Y-%m-%d), $commit)"
  fi
  echo
  echo "CPU: $cpu (Zen 3, AVX2, no AVX-512). Load average at start: $load0. ${BENCH_NOTES:-The machine is shared with other work: ratios are noisy.}"
  echo "Command: \`${ab:+DP_OVERLAP=ab }bash bench/dp_bench.sh\` (DP_STEPS=$steps, DP_RUNS=$runs; Open MPI $(mpirun --version 2>/dev/null | head -n 1 | grep -o '[0-9.]*$'), shared memory, \`--bind-to core\`)."
  echo
  if [ "$ab" = ab ]; then
  echo "| shape | 1 x 2 threads tok/s | 2 ranks, all-reduce after the backward, tok/s | 2 ranks, overlapped, tok/s | on/off | after: all-reduce + wait per step | overlapped: start + progress + wait per step | runs |"
  echo "|---|---|---|---|---|---|---|---|"
  else
  echo "| shape | 1 x 2 threads tok/s | 2 ranks x 1 thread tok/s | ratio | all-reduce per step | waiting for the other rank per step | runs |"
  echo "|---|---|---|---|---|---|---|"
  fi
  for r in "${rows[@]}"; do echo "$r"; done
} >"$tmp/table"
cat "$tmp/table"
[ "$results" = - ] || cat "$tmp/table" >>"$results"
