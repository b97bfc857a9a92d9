#!/bin/bash
# Data-parallel ftc train over MPI (docs/distributed.md), on loopback: `mpirun -np N ftc train` with the global
# batch 6 split over N = 1, 2, 3 ranks against one process, for full, LoRA and head on classify (a tiny BERT from
# ftc init, pre-tokenized data of 4..15 tokens: padded batches) and causal-lm (stories260K, prompt/completion data
# of varied lengths, answer-only loss masks). Per-step training and validation loss equal to 1e-6 relative, every
# weight and AdamW moment after 10 steps equal to 1e-5 (tests/lib/compare_runs.py); N = 1 is the one-process
# code path and must be bit-identical. Then: a batch not divisible by N is refused naming both numbers; a rank
# SIGKILLed mid-run ends the job with an error, leaves the last checkpoint intact, and --resume on as many ranks
# finishes bit-identical to an uninterrupted run. Skipped (with the reason) without mpirun; an ftc built without
# MPI must refuse the launch clearly.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
SRC=${FTC_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d /tmp/ftc_cli_mpi.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"

if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun not found (apt-get install openmpi-bin libopenmpi-dev, or make deps); data-parallel training untested"
  exit 0
fi
# Open MPI refuses root without these; more ranks than cores needs --oversubscribe (this runs on 2 cores).
# Under the ASan build: Open MPI's plugins keep allocations from MPI_Init to exit and are unloaded at MPI_Finalize,
# so LeakSanitizer reports them from "<unknown module>" and no suppression can name them: leak detection is off
# for the ranks mpirun starts; the one-process reference runs below (the same trainer) keep it.
MPI=(env "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0" mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
export FTC_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# the gradient all-reduce overlapped with the backward (off by default): every equivalence below holds with it; the
# comparison with it off is after each case
export FTC_DP_OVERLAP=1
# a session directory of its own (Open MPI's default /tmp/ompi.HOST.UID is shared by every mpirun of the user, and
# concurrent jobs, e.g. ctest -j or a benchmark beside the tests, race on creating it)
export OMPI_MCA_orte_tmpdir_base="$T"

if ! ldd "$FTC" 2>/dev/null | grep -q libmpi; then
  expect_rc 1 "this ftc was built without MPI" "${MPI[@]}" -np 2 "$FTC" train --model m --data d --out "$T/x"
  echo "SKIP: $FTC was built without MPI (FTC_MPI=OFF or no libopenmpi-dev): checked that it refuses a launch of 2"
  exit 0
fi

STORIES="${FTC_SHARED_DATA:-}/models/stories260K-hf"
cat >"$T/tinybert.json" <<'JSON'
{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 64, "type_vocab_size": 2,
 "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "layer_norm_eps": 1e-12, "initializer_range": 0.02,
 "hidden_act": "gelu", "pad_token_id": 0}
JSON
"$FTC" init --config "$T/tinybert.json" --out "$T/tb" --seed 1 >/dev/null || fail "ftc init"
awk 'BEGIN { srand(1); for (i = 0; i < 30; i++) { c = int(rand() * 3); len = 3 + int(rand() * 12); s = "101";
  for (t = 0; t < len; t++) s = s ", " (rand() < 0.5 ? 200 + 7 * c : 300 + int(rand() * 600));
  printf "{\"input_ids\": [%s, 102], \"label\": \"class%d\"}\n", s, c } }' >"$T/cls.jsonl"
awk 'BEGIN { srand(4); split("the cat dog sun tree ran big little happy played went saw home park ball girl boy", w, " ");
  for (i = 0; i < 30; i++) { p = "Once"; n = 2 + int(rand() * 8); for (k = 0; k < n; k++) p = p " " w[1 + int(rand() * 17)];
    c = ""; n = 1 + int(rand() * 12); for (k = 0; k < n; k++) c = c " " w[1 + int(rand() * 17)];
    printf "{\"prompt\": \"%s\", \"completion\": \"%s.\"}\n", p, c } }' >"$T/lm.jsonl"

# lr per case: Adam divides by sqrt(v), so a weight whose gradient is mostly rounding moves by about lr whatever
# its sign: the float sums' order (per rank, then across ranks) shows as differences proportional to lr
COMMON=(--val-split 0.2 --batch 6 --max-steps 10 --eval-every 5 --seed 3 --quiet --log-every 1 --warmup 0
        --lora-dropout 0 --no-lp-ft)
cases=("classify full 2e-4" "classify lora 1e-3" "classify head 1e-3")
if [ -f "$STORIES/model.safetensors" ]; then
  cases+=("causal-lm full 1e-4" "causal-lm lora 1e-3" "causal-lm head 1e-4")
else
  echo "note: $STORIES missing: causal-lm cases skipped"
fi
for cs in "${cases[@]}"; do
  read -r task method lr <<<"$cs"
  if [ "$task" = classify ]; then args=(--model "$T/tb" --task classify --data "$T/cls.jsonl")
  else args=(--model "$STORIES" --task causal-lm --data "$T/lm.jsonl" --samples 0); fi
  args+=(--method "$method" --lr "$lr" "${COMMON[@]}")
  ref="$T/ref-$task-$method"
  "$FTC" train "${args[@]}" --out "$ref" >/dev/null 2>"$T/err" || { cat "$T/err"; fail "$task $method: one process"; }
  for n in 1 2 3; do
    run="$T/np$n-$task-$method"
    "${MPI[@]}" -np "$n" "$FTC" train "${args[@]}" --out "$run" >"$T/out" 2>"$T/err" ||
      { cat "$T/out" "$T/err"; fail "$task $method: mpirun -np $n"; }
    [ -f "$run/model/model.safetensors" ] || [ -f "$run/adapter/adapter_model.safetensors" ] || fail "$run: no model"
    bitwise=(); [ "$n" = 1 ] && bitwise=(--bitwise)
    res=$(python3 "$SRC/tests/lib/compare_runs.py" "$ref" "$run" "${bitwise[@]}") || { echo "$res"; fail "$task $method N=$n"; }
    echo "$task $method N=$n: $res"
    if [ "$n" -gt 1 ]; then
      grep -q "\"dp_ranks\":$n" "$run/metrics.jsonl" || fail "$run/metrics.jsonl lacks dp_ranks $n"
      grep -q "\"data_parallel_ranks\": $n" "$run/config.resolved.json" || fail "$run/config.resolved.json lacks the ranks"
      grep -q '"dp_buckets":[1-9]' "$run/metrics.jsonl" || fail "$run: the gradient sum was not overlapped (dp_buckets)"
    fi
  done
  # The all-reduce overlapped with the backward (FTC_DP_OVERLAP=1) against one MPI_Allreduce after it (FTC_DP_OVERLAP=0):
  # on 2 ranks each element is a + b either way, so bit-identical; with 2 micro-batches per step too (only the
  # last one's backward may start the sums)
  if [ "$method" != head ]; then
    for ga in 1 2; do
      on="$T/np2-$task-$method"
      if [ "$ga" = 2 ]; then
        on="$T/on-ga2-$task-$method"
        "${MPI[@]}" -np 2 "$FTC" train "${args[@]}" --grad-accum 2 --out "$on" >/dev/null 2>"$T/err" ||
          { cat "$T/err"; fail "$task $method: overlap, grad-accum 2"; }
      fi
      off="$T/off-ga$ga-$task-$method"
      FTC_DP_OVERLAP=0 "${MPI[@]}" -x FTC_DP_OVERLAP -np 2 "$FTC" train "${args[@]}" --grad-accum "$ga" --out "$off" \
        >/dev/null 2>"$T/err" || { cat "$T/err"; fail "$task $method: FTC_DP_OVERLAP=0"; }
      ! grep -q dp_buckets "$off/metrics.jsonl" || fail "$off: FTC_DP_OVERLAP=0 still overlapped"
      res=$(python3 "$SRC/tests/lib/compare_runs.py" "$off" "$on" --bitwise) || { echo "$res"; fail "$task $method: overlap on != off (grad-accum $ga)"; }
      echo "$task $method N=2 overlap on vs off, grad-accum $ga: $res"
    done
  fi
done

# the global batch must split evenly
expect_rc 1 "--batch 6 is not divisible by the 4 ranks" "${MPI[@]}" -np 4 "$FTC" train --model "$T/tb" --task classify \
  --data "$T/cls.jsonl" --batch 6 --out "$T/four" --quiet
[ "$(grep -c 'not divisible' "$T/err")" = 1 ] || { cat "$T/err"; fail "the refusal should be printed once (rank 0)"; }

# A rank killed with SIGKILL inside the second evaluation (step 4; checkpoints every 2 steps, so step 2's is the last)
ARGS=(--model "$T/tb" --task classify --data "$T/cls.jsonl" --method full --lr 2e-4 "${COMMON[@]}" --eval-every 2
      --save-every 2)
"${MPI[@]}" -np 2 "$FTC" train "${ARGS[@]}" --out "$T/whole" >/dev/null 2>&1 || fail "uninterrupted 2-rank run"
FTC_TEST_KILL_AT=eval:2 FTC_TEST_KILL_RANK=1 timeout 120 "${MPI[@]}" -np 2 "$FTC" train "${ARGS[@]}" --out "$T/killed" \
  >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || { cat "$T/err"; fail "a killed rank should end the job with an error (exit $rc)"; }
grep -qi "signal 9\|killed" "$T/err" || { cat "$T/err"; fail "no word of the killed rank"; }
state=$(python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); f.read(8); n = struct.unpack("<Q", f.read(8))[0]; print(json.loads(f.read(n))["state"]["step"])' \
  "$T/killed/checkpoint.ftc") || fail "checkpoint.ftc unreadable after the kill"
[ "$state" = 2 ] || fail "checkpoint.ftc should hold step 2, holds step $state"
[ ! -e "$T/killed/model" ] || fail "a killed run wrote model/"
"${MPI[@]}" -np 2 "$FTC" train "${ARGS[@]}" --out "$T/killed" --resume >/dev/null 2>"$T/err" ||
  { cat "$T/err"; fail "--resume on 2 ranks"; }
res=$(python3 "$SRC/tests/lib/compare_runs.py" "$T/whole" "$T/killed" --bitwise) || { echo "$res"; fail "resumed != uninterrupted"; }
echo "killed rank 1 at step 4, resumed from step 2: $res"
echo "ok"
