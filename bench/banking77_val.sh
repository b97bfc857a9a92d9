#!/bin/sh
# Banking77 full fine-tuning variants on the VALIDATION split only (issue 14's method for changing a default; the
# test set is never read): per seed, the LP-FT head stage once (`--method head --lr 1e-2`, what `--method full`'s
# automatic stage 1 runs), then for each variant the full stage from a copy of it (a fresh run directory holding
# that head stage, `ftc train --resume`: ftc train's own LP-FT path reuses the finished head stage, so this is
# exactly `--method full` plus the variant's flags). Prints one line per run: the validation accuracy at each
# evaluation (the epoch ends), the best (the checkpoint kept), CPU and wall seconds, peak RSS; appends nothing to bench/RESULTS.md.
#
#   sh bench/banking77_val.sh [FTC_BIN] "SEEDS" NAME "FLAGS" [NAME "FLAGS" ...]
#   e.g. sh bench/banking77_val.sh build/ftc "42 43 44 45" default "" nordrop "--rdrop 0"
#   BANKING77_VAL_RUNS=DIR  where the runs go (default runs/banking77_val); FTC_THREADS as ftc train reads it
# The rules used so far (docs/train.md "Defaults"): a variant replaces the default only with >= 3 of the 1,005
# validation examples over it on every seed (seeds 42, 43), or, written down before the runs, with a mean gain of
# >= 3 examples over seeds 42-45 and no seed more than 1 below (R-Drop, full's default since 2026-12-05).
set -eu
FTC=${1:-build/ftc}
SEEDS=${2:-42}
shift 2 || { echo "usage: sh bench/banking77_val.sh FTC_BIN SEEDS NAME FLAGS [NAME FLAGS ...]" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${BANKING77_DATA:-$ROOT/../shared/data/banking77}
RUNS=${BANKING77_VAL_RUNS:-$ROOT/runs/banking77_val}
MINILM=$(sh "$ROOT/scripts/find-minilm.sh")
[ -n "$MINILM" ] || { echo "banking77_val: MiniLM not installed (sh scripts/install-deps.sh)" >&2; exit 2; }
[ -f "$DATA/train.csv" ] || { echo "banking77_val: $DATA/train.csv not found" >&2; exit 2; }
[ $# -ge 2 ] || { echo "banking77_val: give at least one NAME \"FLAGS\" pair" >&2; exit 1; }
mkdir -p "$RUNS"
COMMON="--data $DATA/train.csv --task classify --val-split 0.1"
echo "banking77_val: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for seed in $SEEDS; do
  hs=$RUNS/head$seed
  if [ ! -f "$hs/head-stage/model/config.json" ]; then
    rm -rf "$hs"; mkdir -p "$hs"
    # shellcheck disable=SC2086
    "$FTC" train --model "$MINILM" $COMMON --method head --lr 1e-2 --seed "$seed" --out "$hs/head-stage" --quiet \
      >"$hs.log"
  fi
done
while [ $# -ge 2 ]; do
  name=$1 flags=$2; shift 2
  for seed in $SEEDS; do
    out=$RUNS/$name.s$seed
    rm -rf "$out"; mkdir -p "$out"
    cp -r "$RUNS/head$seed/head-stage" "$out/"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    /usr/bin/time -v -o "$out.time" "$FTC" train --resume --model "$MINILM" $COMMON --method full --seed "$seed" \
      --out "$out" --quiet $flags >"$out.log"
    wall=$(( $(date +%s) - t0 ))
    accs=$(grep -o '"accuracy":[0-9.]*' "$out/metrics.jsonl" | sed 's/.*://' | awk '{printf "%s%.4f", (NR > 1 ? " " : ""), $1}')
    best=$(echo "$accs" | tr ' ' '\n' | sort -r | head -n 1)
    cpu_s=$(awk -F: '/User time|System time/ {s += $2} END {printf "%.0f", s}' "$out.time")
    rss=$(awk -F: '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$out.time")
    echo "banking77_val $name seed $seed [$flags]: validation accuracy at each evaluation $accs; best $best; full stage ${cpu_s} s CPU, ${wall} s wall, peak RSS ${rss} MB; load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
