#!/bin/sh
# Banking77 (../shared/data/banking77: 10,003 train / 3,080 test, 77 intents): fine-tunes
# all-MiniLM-L6-v2 with each method, evaluates on the official test set and appends a row per method to
# bench/RESULTS.md (accuracy, macro-F1, epochs, wall time, peak RSS). Early stopping and the best
# checkpoint use a 10% validation split of train; the test set is only used for the final figures.
#
#   sh bench/banking77.sh [FTC_BIN] [METHODS]       e.g. sh bench/banking77.sh build/ftc "head full"
#   BANKING77_TORCH=1   also runs the same full fine-tune in PyTorch (bench/banking77_torch.py) for the ratio
#   BANKING77_RESULTS=FILE  where the rows go (default bench/RESULTS.md; /dev/null to measure without recording)
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

COMMON="--task classify --max-len 64 --batch 32 --seed 42 --val-split 0.1 --metric accuracy --eval-every 0"
args_for() {
  case $1 in
    # head: checked on the validation split once epochs became cheap (cached features): 1e-2 x 4 epochs
    # (best val accuracy 0.930) beat 10-20 epochs at 3e-3..5e-2 (0.915-0.929)
    head) echo "--method head --lr 1e-2 --epochs 4" ;;
    lora) echo "--method lora --lora-r 16 --lora-alpha 32 --lora-targets all-linear --lr 1e-3 --epochs 3 --warmup 0.1" ;;
    full) echo "--method full --lr 1e-4 --epochs 3 --warmup 0.1 --weight-decay 0.01" ;;
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
for m in $METHODS; do
  args=$(args_for "$m")
  out=$RUNS/$m
  rm -rf "$out"
  echo "== banking77 $m: ftc train $args"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$RUNS/$m.time" "$FTC" train --model "$MINILM" --data "$DATA/train.csv" --out "$out" $COMMON $args
  wall=$(echo "$start $(date +%s.%N)" | awk '{printf "%.0f", $2 - $1}')
  /usr/bin/time -f "%e %U %S" -o "$RUNS/$m.eval.time" "$FTC" eval --model "$out" --data "$DATA/test.csv" --json >"$out/eval.json"
  rss=$(awk -F: '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$RUNS/$m.time")
  cpu_s=$(awk -F: '/User time|System time/ {s += $2} END {printf "%.0f", s}' "$RUNS/$m.time")
  eval_s=$(awk '{printf "%.0f s wall, %.0f s CPU", $1, $2 + $3}' "$RUNS/$m.eval.time")
  epochs=$(echo "$args" | sed 's/.*--epochs \([0-9]*\).*/\1/')
  acc=$(json_num accuracy "$out/eval.json"); f1=$(json_num macro_f1 "$out/eval.json")
  echo "banking77 $m: accuracy $acc macro-F1 $f1 train wall ${wall}s CPU ${cpu_s}s peak RSS ${rss} MB; test eval $eval_s"
  printf '| %s | %s | %s, %s cores | ftc %s | `%s` | %s | %.4f | %.4f | %s | %s | load avg at start %s |\n' \
    "$(date -u +%F)" "$commit" "$cpu" "$(nproc)" "$m" "$COMMON $args" "$epochs" "$acc" "$f1" "$wall" "$rss" \
    "$load; train CPU ${cpu_s} s; test eval $eval_s" >>"$RESULTS"
done

if [ "${BANKING77_TORCH:-0}" = 1 ]; then
  echo "== banking77 PyTorch full fine-tune (same hyperparameters)"
  start=$(date +%s.%N)
  /usr/bin/time -v -o "$RUNS/torch.time" /usr/bin/python3 "$ROOT/bench/banking77_torch.py" --data "$DATA" --model "$MINILM" \
    --lr 1e-4 --batch 32 --epochs 3 --max-len 64 --warmup-ratio 0.1 --weight-decay 0.01 --seed 42 --threads 2 \
    --val-fraction 0.1 >"$RUNS/torch.json"
  wall=$(echo "$start $(date +%s.%N)" | awk '{printf "%.0f", $2 - $1}')
  rss=$(awk -F: '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$RUNS/torch.time")
  acc=$(json_num accuracy "$RUNS/torch.json"); f1=$(json_num macro_f1 "$RUNS/torch.json")
  echo "banking77 torch full: accuracy $acc macro-F1 $f1 wall ${wall}s"
  printf '| %s | %s | %s, %s cores | PyTorch %s full | `banking77_torch.py --lr 1e-4 --batch 32 --epochs 3 --max-len 64` | 3 | %.4f | %.4f | %s | %s | same recipe as ftc full, 2 threads |\n' \
    "$(date -u +%F)" "$commit" "$cpu" "$(nproc)" "$(/usr/bin/python3 -c 'import torch;print(torch.__version__)')" "$acc" "$f1" "$wall" "$rss" >>"$RESULTS"
fi
