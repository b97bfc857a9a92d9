#!/bin/sh
# Banking77 (../shared/data/banking77: 10,003 train / 3,080 test, 77 intents): fine-tunes
# all-MiniLM-L6-v2 with each method, evaluates on the official test set and appends a row per method to
# bench/RESULTS.md (accuracy, macro-F1, epochs, wall time, peak RSS). Early stopping and the best
# checkpoint use a 10% validation split of train; the test set is only used for the final figures.
#
#   sh bench/banking77.sh [FTC_BIN] [METHODS]       e.g. sh bench/banking77.sh build/ftc "head full"
#   a method may name a frozen base type after a +: "head+q8_0 lora+q8_0" adds --base-dtype q8_0 (docs/quant.md)
#   BANKING77_TORCH=1   also runs the same full fine-tune in PyTorch (bench/banking77_torch.py) for the ratio
#   BANKING77_RESULTS=FILE  where the rows go (default bench/RESULTS.md; /dev/null to measure without recording)
#   BANKING77_VAL_SPLIT=F   the validation share of train (default 0.1); 0 names no validation at all, the barest
#                           command: all 10,003 examples train, the epochs fit that size, the last epoch is the model
# Rows record the training wall time; the notes add its CPU time (user+sys), the test-set eval's wall and
# CPU time and the load average, since the machine may be shared.
set -eu
FTC=${1:-build/ftc}
METHODS=${2:-"head lora full"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${BANKING77_DATA:-$ROOT/../shared/data/banking77}
RUNS=${BANKING77_RUNS:-$ROOT/runs/banking77}
RESULTS=${BANKING77_RESULTS:-$ROOT/bench/RESULTS.md}
MINILM=$(sh "$ROOT/scripts/find-minilm.sh")
[ -n "$MINILM" ] || { echo "banking77: MiniLM not installed (sh scripts/install-deps.sh)" >&2; exit 2; }
[ -f "$DATA/train.csv" ] || { echo "banking77: $DATA/train.csv not found" >&2; exit 2; }
mkdir -p "$RUNS"

# Only the data, the task, the method and the validation split are named: every other setting is ftc train's
# default for the method (src/train/runconfig.c; chosen on validation splits, docs/train.md "Defaults"). For full
# that includes the head-first stage (LP-FT: the head alone, then every weight), which ftc train runs itself;
# full-scratch is full fine-tuning from a random head (--no-lp-ft), for comparison.
VAL_SPLIT=${BANKING77_VAL_SPLIT:-0.1}
COMMON="--task classify"
[ "$VAL_SPLIT" = 0 ] || COMMON="$COMMON --val-split $VAL_SPLIT"
# What the defaults come to on Banking77's 9,003 training examples (the PyTorch run repeats them): head 1e-2,
# 3 epochs (4 fitted down to 30,000 examples seen); full 5e-5, warmup 0.1, 3 epochs, batch 32, R-Drop alpha 1.
HEAD_LR=1e-2
HEAD_EPOCHS=3
FULL_LR=5e-5
FULL_EPOCHS=3
FULL_RDROP=1
args_for() {
  case $1 in
    *+*) echo "$(args_for "${1%%+*}") --base-dtype ${1#*+}" ;;
    head) echo "--method head" ;;
    lora) echo "--method lora" ;;
    full) echo "--method full" ;;
    full-scratch) echo "--method full --no-lp-ft" ;;
    *) echo "banking77: unknown method $1" >&2; exit 1 ;;
  esac
}
json_num() { tr -d '\n' <"$2" | grep -o "\"$1\": *-\{0,1\}[0-9][0-9.eE+-]*" | head -n 1 | sed 's/.*: *//'; }

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
load=$(cut -d' ' -f1-3 /proc/loadavg)
if ! grep -q "^## Banking77" "$RESULTS" 2>/dev/null; then
  printf '\n## Banking77 (MiniLM-L6 fine-tuning, official test set)\n\n| date | commit | machine | method | command args | epochs | accuracy | macro-F1 | wall s | peak RSS MB | notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n' >>"$RESULTS"
fi
# train NAME MODEL ARGS...: one timed ftc train into $RUNS/NAME; adds to the wall/CPU sums, keeps the RSS peak
train() {
  name=$1 model=$2; shift 2
  rm -rf "${RUNS:?}/$name"
  echo "== banking77 $name: ftc train $*"
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$RUNS/$name.time" "$FTC" train --model "$model" --data "$DATA/train.csv" --out "$RUNS/$name" $COMMON "$@"
  wall=$(echo "$wall $t0 $(date +%s.%N)" | awk '{printf "%.1f", $1 + $3 - $2}')
  cpu_s=$(awk -F: -v s="$cpu_s" '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$RUNS/$name.time")
  rss=$(awk -F: -v r="$rss" '/Maximum resident set size/ {v = $2 / 1024; if (v > r) r = v} END {printf "%.0f", r}' "$RUNS/$name.time")
}
for m in $METHODS; do
  args=$(args_for "$m")
  wall=0 cpu_s=0 rss=0 shown=$args epochs=$(echo "$args" | sed 's/.*--epochs \([0-9]*\).*/\1/')
  # shellcheck disable=SC2086
  train "$m" "$MINILM" $args
  epochs=$(json_num epochs "$RUNS/$m/config.resolved.json")
  [ -f "$RUNS/$m/head-stage/config.resolved.json" ] && epochs="$(json_num epochs "$RUNS/$m/head-stage/config.resolved.json")+$epochs"
  out=$RUNS/$m
  /usr/bin/time -f "%e %U %S" -o "$RUNS/$m.eval.time" "$FTC" eval --model "$out" --data "$DATA/test.csv" --json >"$out/eval.json"
  eval_s=$(awk '{printf "%.0f s wall, %.0f s CPU", $1, $2 + $3}' "$RUNS/$m.eval.time")
  acc=$(json_num accuracy "$out/eval.json"); f1=$(json_num macro_f1 "$out/eval.json")
  wall=$(printf '%.0f' "$wall"); cpu_s=$(printf '%.0f' "$cpu_s")
  echo "banking77 $m: accuracy $acc macro-F1 $f1 train wall ${wall}s CPU ${cpu_s}s peak RSS ${rss} MB; test eval $eval_s"
  printf '| %s | %s | %s, %s cores | ftc %s | `%s` | %s | %.4f | %.4f | %s | %s | load avg at start %s |\n' \
    "$(date -u +%F)" "$commit" "$cpu" "$(nproc)" "$m" "$COMMON $shown" "$epochs" "$acc" "$f1" "$wall" "$rss" \
    "$load; train CPU ${cpu_s} s; test eval $eval_s" >>"$RESULTS"
done

if [ "${BANKING77_TORCH:-0}" = 1 ]; then
  # bench/banking77_torch.py repeats the recipe the defaults come to at --val-split 0.1 (constants above)
  [ "$VAL_SPLIT" = 0.1 ] || { echo "banking77: BANKING77_TORCH=1 mirrors the 0.1 validation split only" >&2; exit 2; }
  echo "== banking77 PyTorch full fine-tune (same hyperparameters)"
  start=$(date +%s.%N)
  /usr/bin/time -v -o "$RUNS/torch.time" /usr/bin/python3 "$ROOT/bench/banking77_torch.py" --data "$DATA" --model "$MINILM" \
    --head-lr $HEAD_LR --head-epochs $HEAD_EPOCHS --lr $FULL_LR --batch 32 --epochs $FULL_EPOCHS --max-len 64 --warmup-ratio 0.1 --weight-decay 0.01 --rdrop $FULL_RDROP --seed 42 --threads 2 \
    --val-fraction 0.1 >"$RUNS/torch.json"
  wall=$(echo "$start $(date +%s.%N)" | awk '{printf "%.0f", $2 - $1}')
  rss=$(awk -F: '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$RUNS/torch.time")
  acc=$(json_num accuracy "$RUNS/torch.json"); f1=$(json_num macro_f1 "$RUNS/torch.json")
  echo "banking77 torch full: accuracy $acc macro-F1 $f1 wall ${wall}s"
  printf '| %s | %s | %s, %s cores | PyTorch %s full | `banking77_torch.py --head-lr %s --head-epochs %s --lr %s --batch 32 --epochs %s --max-len 64 --rdrop %s` | %s+%s | %.4f | %.4f | %s | %s | same recipe as ftc full, 2 threads |\n' \
    "$(date -u +%F)" "$commit" "$cpu" "$(nproc)" "$(/usr/bin/python3 -c 'import torch;print(torch.__version__)')" "$HEAD_LR" "$HEAD_EPOCHS" "$FULL_LR" "$FULL_EPOCHS" "$FULL_RDROP" "$HEAD_EPOCHS" "$FULL_EPOCHS" "$acc" "$f1" "$wall" "$rss" >>"$RESULTS"
fi
