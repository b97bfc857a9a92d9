#!/bin/bash
# Step times of head / lora / full on MiniLM (docs/train.md): the same pre-tokenized classify data
# (batch 16 x 64 tokens), 3 warm-up steps then 10 timed steps each; prints ms per optimizer step.
# Usage: tools/train_step_times.sh [FTC_BIN]   (threads: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS as set)
set -eu
FTC=${1:-build/ftc}
MINILM=$(sh scripts/find-minilm.sh)
[ -n "$MINILM" ] || { echo "MiniLM not installed (scripts/find-minilm.sh)"; exit 1; }
T=$(mktemp -d /tmp/ftc_steps.XXXXXX)
trap 'rm -rf "$T"' EXIT
awk 'BEGIN { srand(3); for (i = 0; i < 512; i++) { c = int(rand() * 4); s = "101";
  for (t = 0; t < 62; t++) s = s ", " (rand() < 0.3 ? 2000 + 7 * c : 3000 + int(rand() * 5000));
  printf "{\"input_ids\": [%s, 102], \"label\": %d}\n", s, c } }' >"$T/data.jsonl"
# prints "WALL_MS CPU_MS" of one run (CPU = user + sys: less sensitive to other load on the machine)
run_ms() { # run_ms METHOD STEPS
  /usr/bin/time -f "%e %U %S" -o "$T/time" "$FTC" train --model "$MINILM" --data "$T/data.jsonl" --out "$T/$1_$2" \
    --method "$1" --batch 16 --max-len 64 --max-steps "$2" --log-every 1000 --save-every 100000 --quiet >/dev/null
  awk '{ printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000 }' "$T/time"
}
printf '%-6s %12s %14s %14s\n' method trainable wall_ms/step cpu_ms/step
for m in ${METHODS:-head lora full}; do
  read -r wa ca <<<"$(run_ms "$m" 3)"; read -r wb cb <<<"$(run_ms "$m" 13)"
  params=$(grep -o '"trainable_params": [0-9]*' "$T/${m}_13/config.resolved.json" | grep -o '[0-9]*$')
  printf '%-6s %12s %14s %14s\n' "$m" "$params" "$(( (wb - wa) / 10 ))" "$(( (cb - ca) / 10 ))"
done
