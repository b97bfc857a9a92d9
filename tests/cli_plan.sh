#!/bin/bash
# ftc plan: the plan of a small stories260K run agrees with the run ftc train then makes (steps, trainable
# parameters, tokens; peak memory within 25% of the measured peak RSS outside ASan); a run whose plan cannot fit
# in the machine's memory is refused by ftc train (exit 2, naming the figures and --no-memory-check) before it
# allocates anything, and ftc plan says it does not fit.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_plan.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"
S="${FTC_SHARED_DATA:-}/models/stories260K-hf"
[ -f "$S/model.safetensors" ] || { echo "note: stories260K not found (FTC_SHARED_DATA); skipping"; exit 0; }
for i in $(seq 1 40); do
  printf '{"prompt": "Once upon a time, there was a little", "completion": " girl named Lily %d. She liked to play."}\n' "$i"
done >"$T/qa.jsonl"
ARGS=(--model "$S" --data "$T/qa.jsonl" --val-split 0.2 --method lora --batch 4)

expect_rc 0 "" "$FTC" plan "${ARGS[@]}" --measure-steps 2 --json
cp "$T/out" "$T/plan.json"
expect_rc 0 "" "$FTC" plan "${ARGS[@]}" --measure-steps 2
for w in "parameters" "peak" "with --grad-checkpoint" "available" "fits" "estimate" "step"; do
  grep -q -- "$w" "$T/out" || { cat "$T/out"; fail "plan output lacks '$w'"; }
done

run=$T/run
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "%M" -o "$T/rss" "$FTC" train "${ARGS[@]}" --out "$run" --quiet >/dev/null 2>"$T/err" || { cat "$T/err"; fail "train"; }
else
  "$FTC" train "${ARGS[@]}" --out "$run" --quiet >/dev/null 2>"$T/err" || { cat "$T/err"; fail "train"; }
fi
asan=0; ldd "$FTC" 2>/dev/null | grep -q asan && asan=1
python3 - "$T/plan.json" "$run/config.resolved.json" "$T/rss" "$asan" <<'PY' || fail "plan against the run"
import json, os, sys
p, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("total_steps", "steps_per_epoch", "warmup_steps", "trainable_params", "total_params"):
    assert p[k] == c[k], (k, p[k], c[k])
assert p["epochs"] == c["epochs"] and p["batch"] == c["batch"], (p["epochs"], c["epochs"], p["batch"], c["batch"])
assert p["train_examples"] == c["train_examples"] and p["val_examples"] == c["val_examples"]
assert p["fits"] is True and p["measured_steps"] == 2 and p["step_seconds"] > 0 and p["total_seconds"] > 0
assert p["grad_bytes"] == 4 * p["trainable_params"] and p["optimizer_bytes"] == 8 * p["trainable_params"]
assert 0 < p["activation_bytes"] and p["peak_bytes"] > p["process_bytes"]
if os.path.exists(sys.argv[3]) and sys.argv[4] == "0":
    rss = int(open(sys.argv[3]).read().split()[-1]) * 1024
    r = p["peak_bytes"] / rss
    assert 0.75 <= r <= 1.25, f"plan peak {p['peak_bytes']} vs measured {rss}: {r:.2f}x"
    print(f"plan peak {p['peak_bytes'] / 2**20:.1f} MiB, measured {rss / 2**20:.1f} MiB ({r:.2f}x)")
PY

# a batch that cannot fit: refused before anything is allocated, with the figures and the way out
# (one long example: batches are cut at 256 tokens; about 1 TB of activations at 65536 rows)
{ cat "$T/qa.jsonl"; printf '{"prompt": "Once upon a time", "completion": "%s"}\n' "$(printf ' and then the cat sat on the mat%.0s' $(seq 1 60))"; } >"$T/long.jsonl"
expect_rc 2 "--no-memory-check" "$FTC" train --model "$S" --data "$T/long.jsonl" --max-len 256 --batch 65536 --out "$T/huge"
grep -q "GiB at its peak" "$T/err" && grep -q "GiB available" "$T/err" || { cat "$T/err"; fail "refusal lacks the figures"; }
[ ! -e "$T/huge/checkpoint.ftc" ] || fail "a refused run wrote a checkpoint"
expect_rc 0 "" "$FTC" plan --model "$S" --data "$T/long.jsonl" --max-len 256 --batch 65536
grep -q "does NOT fit" "$T/out" || { cat "$T/out"; fail "plan should say the run does not fit"; }
expect_rc 1 "unknown option '--measure-step'" "$FTC" plan --model "$S" --data "$T/qa.jsonl" --measure-step 2
echo "cli_plan: ok"
