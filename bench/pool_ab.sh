#!/bin/sh
# Training throughput through the library (bench/train_bench, no re-exec), two builds alternated in one run:
# issue 15's before/after for the thread pool (OpenMP + matmul pool + OpenBLAS threads -> one pool).
#
#   sh bench/pool_ab.sh OLD_BUILD_DIR NEW_BUILD_DIR [MODELS_DIR]
#
# Each build dir holds a train_bench (and an ftc, used once to write the random models with `ftc init`).
# Shapes as bench/train_bench.sh: minilm-cls B32xT64 (8 steps), gpt2-small B4xT256 (5 steps), fp32 and bf16.
# Environment: AB_RUNS=N alternations per shape (default 3), AB_SHAPES=a,b substrings of the labels to run,
# AB_THREADS=N threads (default 2; the old build reads OMP_NUM_THREADS, the new one FTC_THREADS).
# Prints one line per run and a table of medians with the new/old ratio; the loss after the last step of each
# side is printed too (same seed, same data: equal unless the numerics changed).
set -eu
old=${1:?usage: pool_ab.sh OLD_BUILD NEW_BUILD [MODELS]}
new=${2:?usage: pool_ab.sh OLD_BUILD NEW_BUILD [MODELS]}
models=${3:-build/bench-models}
runs=${AB_RUNS:-3}
threads=${AB_THREADS:-2}
export OMP_NUM_THREADS=$threads FTC_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model_dir() { # CONFIG -> dir of a random f32 model written once
  d=$models/$1-f32
  [ -f "$d/model.safetensors" ] || "$new/ftc" init --config bench/configs/$1.json --out "$d" --seed 1 --dtype f32 --force >&2
  echo "$d"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %H:%M UTC')"
shape() { # LABEL CONFIG B T STEPS PRECISION
  label=$1
  if [ -n "${AB_SHAPES:-}" ]; then
    hit=0
    for w in $(echo "$AB_SHAPES" | tr ',' ' '); do case "$label" in *"$w"*) hit=1 ;; esac; done
    [ "$hit" = 1 ] || return 0
  fi
  dir=$(model_dir "$2")
  args="--model $dir --batch $3 --seq $4 --steps $5 --method full --precision $6 --base-dtype f32"
  i=1
  while [ "$i" -le "$runs" ]; do
    for side in old new; do
      eval bin=\$$side
      "$bin/train_bench" $args 2>"$tmp/err" | tail -1 >"$tmp/out" || { echo "$label $side: failed" >&2; tail -3 "$tmp/err" >&2; continue; }
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], "%.1f" % d["tokens_per_s"], "%.6f" % d["loss_last"])' \
        "$tmp/out" "$label" "$side" | tee -a "$tmp/rows"
    done
    i=$((i + 1))
  done
}
shape minilm-cls minilm-cls 32 64 8 fp32
shape gpt2-small-B4xT256 gpt2-small 4 256 5 fp32
shape minilm-cls-bf16 minilm-cls 32 64 8 bf16
shape gpt2-small-B4xT256-bf16 gpt2-small 4 256 5 bf16
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/rows" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, side, tps, loss = line.split()
    rows.setdefault(label, {}).setdefault(side, []).append((float(tps), loss))
print("| shape | old tok/s median (min-max, n) | new tok/s median (min-max, n) | new/old | loss old / new |")
print("| --- | --- | --- | --- | --- |")
for label, sides in rows.items():
    def cell(s):
        v = [t for t, _ in sides.get(s, [])]
        return (statistics.median(v), f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f}, n={len(v)})") if v else (None, "-")
    (mo, co), (mn, cn) = cell("old"), cell("new")
    ratio = f"{mn / mo:.2f}x" if mo and mn else "-"
    lo = sides.get("old", [(0, "-")])[0][1]
    ln = sides.get("new", [(0, "-")])[0][1]
    print(f"| {label} | {co} | {cn} | {ratio} | {lo} / {ln} |")
EOF
