#!/bin/sh
# LoRA on a quantized frozen base (--base-dtype, docs/quant.md) against f32 and bf16 bases, in one invocation:
#   memory and speed: peak RSS (/usr/bin/time -v) and median step time (steps 3..N) of build/train_bench,
#     LoRA r8 on all linears, on stories260K (shared data) and gpt2-small / llama-1b (random, `ftc init`)
#   quality: held-out loss of the same `ftc train` LoRA run on stories260K for each base (Banking77's texts as
#     the corpus: train.csv's first 2000 for training, test.csv's first 500 held out)
#
#   sh bench/quant_bench.sh [FTC_BIN]
# Environment: QB_SHAPES (default "stories260K gpt2-small llama-1b"), QB_STEPS (5), QB_MODELS (build/bench-models),
#   QB_RESULTS (bench/RESULTS.md), QB_TRAIN_STEPS (60, the quality runs), QB_QUALITY (1; 0 skips them),
#   QB_BASES (base:precision pairs for every shape, e.g. "bf16:fp32 q8_0:fp32 q4_0:fp32"; default: the list below)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ftc=${1:-$root/build/ftc}
bindir=$(cd "$(dirname "$ftc")" && pwd)
driver=$bindir/train_bench
models=${QB_MODELS:-$root/build/bench-models}
results=${QB_RESULTS:-$here/RESULTS.md}
steps=${QB_STEPS:-5}
shapes=${QB_SHAPES:-stories260K gpt2-small llama-1b}
shared=${FTC_SHARED_DATA:-$root/../shared/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
cmake --build "$bindir" --target train_bench >/dev/null
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
load0=$(cut -d' ' -f1-3 /proc/loadavg)

model_dir() {
  case $1 in
    stories260K) echo "$shared/models/stories260K-hf" ;;
    *) d=$models/$1-bf16
       [ -f "$d/model.safetensors" ] || "$ftc" init --config "$here/configs/$1.json" --out "$d" --seed 1 --dtype bf16 --force >&2
       echo "$d" ;;
  esac
}
shape_args() {
  case $1 in stories260K) echo "--batch 8 --seq 256" ;; gpt2-small) echo "--batch 4 --seq 128" ;; *) echo "--batch 1 --seq 128" ;; esac
}
# q4_k's quantizer searches 21 scales per group: minutes for llama-1b's 1e9 weights on 2 cores; q4_0 there
bases() {
  [ -n "${QB_BASES:-}" ] && { echo "$QB_BASES"; return; }
  case $1 in llama-1b) echo "f32:fp32 bf16:fp32 q8_0:fp32 q4_0:fp32 nf4:fp32 bf16:bf16 q8_0:bf16 q4_0:bf16 nf4:bf16" ;;
    *) echo "f32:fp32 bf16:fp32 q8_0:fp32 q4_0:fp32 q4_k:fp32 nf4:fp32 bf16:bf16 q8_0:bf16 q4_0:bf16 q4_k:bf16 nf4:bf16" ;; esac
}

rows=$tmp/rows
: >"$rows"
for s in $shapes; do
  dir=$(model_dir "$s")
  for bp in $(bases "$s"); do
    b=${bp%%:*} p=${bp##*:}
    echo "== $s base $b precision $p" >&2
    if /usr/bin/time -v "$driver" --model "$dir" $(shape_args "$s") --steps "$steps" --method lora --lora-r 8 \
         --precision "$p" --base-dtype "$b" >"$tmp/out" 2>"$tmp/err"; then
      rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tmp/err")
      tail -1 "$tmp/out" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["rss_mb"]=int(sys.argv[1])/1024; d["shape"]=sys.argv[2]; print(json.dumps(d))' "$rss" "$s" >>"$rows"
    else
      echo "failed: $s $b $p" >&2
      tail -3 "$tmp/err" >&2
    fi
  done
done

# quality: the same LoRA run on stories260K for each base, held-out loss
qrows=$tmp/qrows
: >"$qrows"
if [ "${QB_QUALITY:-1}" = 1 ] && [ -f "$shared/models/stories260K-hf/config.json" ] && [ -f "$shared/banking77/train.csv" ]; then
  python3 - "$shared/banking77" "$tmp" <<'PY'
import csv, json, sys
src, out = sys.argv[1], sys.argv[2]
for name, n in (("train", 2000), ("test", 500)):
    rows = list(csv.DictReader(open(f"{src}/{name}.csv")))[:n]
    with open(f"{out}/{name}.jsonl", "w") as f:
        for r in rows: f.write(json.dumps({"text": r["text"]}) + "\n")
PY
  for b in fp32 bf16 q8_0 q4_0 q4_k nf4; do
    "$ftc" train --model "$shared/models/stories260K-hf" --data "$tmp/train.jsonl" --val "$tmp/test.jsonl" \
      --task causal-lm --method lora --lora-targets all-linear --lora-r 8 --lr 3e-3 --batch 16 --max-len 64 \
      --max-steps "${QB_TRAIN_STEPS:-60}" --eval-every "${QB_TRAIN_STEPS:-60}" --seed 1 --base-dtype "$b" --quiet --out "$tmp/q-$b" >/dev/null 2>&1 ||
      { echo "quality run $b failed" >&2; continue; }
    python3 - "$tmp/q-$b/metrics.jsonl" "$b" >>"$qrows" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"val_loss"' in l]
first = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][0]
print(json.dumps({"base": sys.argv[2], "val_loss": ev[-1]["val_loss"], "first_train_loss": first["loss"]}))
PY
  done
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$rows" "$qrows" "$cpu" "$commit" "$load0" "$load1" "$steps" "${QB_TRAIN_STEPS:-60}" >>"$results" <<'PY'
import json, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
q = [json.loads(l) for l in open(sys.argv[2])]
cpu, commit, l0, l1, steps, tsteps = sys.argv[3:9]
print(f"\n## LoRA on a quantized base (`bench/quant_bench.sh`), {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit {commit}\n")
print(f"{cpu}, 2 threads; load average {l0} at the start, {l1} at the end (other jobs share the 2 cores: "
      f"times are noisy, RSS is not). LoRA r8 on all linears, median step of steps 3..{steps}; "
      "ratios against the bf16 base at the same precision.\n")
print("| model | B x T | base | precision | step s | vs bf16 base | peak RSS MB | vs bf16 base | load s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
ref = {(r["shape"], r["precision"]): r for r in rows if r["base_dtype"] == "bf16"}
for r in rows:
    b = ref.get((r["shape"], r["precision"]))
    st = f'{r["step_s_median"] / b["step_s_median"]:.2f}x' if b else "-"
    rs = f'{r["rss_mb"] / b["rss_mb"]:.2f}x' if b else "-"
    print(f'| {r["shape"]} | {r["batch"]} x {r["seq"]} | {r["base_dtype"]} | {r["precision"]} | {r["step_s_median"]:.3f} | {st} | '
          f'{r["rss_mb"]:.0f} | {rs} | {r["load_s"]:.1f} |')
if q:
    f32 = next((x for x in q if x["base"] == "fp32"), None)
    print("\nHeld-out loss, stories260K LoRA r8 (all linears) on Banking77 texts (2000 train / 500 held out), "
          f"{tsteps} steps of 16 x 64, lr 3e-3, seed 1; stories260K's q4_k is q4_1 (64 is no multiple of 256):\n")
    print("| base | first train loss | held-out loss | vs fp32 base |")
    print("| --- | --- | --- | --- |")
    for x in q:
        d = f'{100 * (x["val_loss"] / f32["val_loss"] - 1):+.2f}%' if f32 else "-"
        print(f'| {x["base"]} | {x["first_train_loss"]:.4f} | {x["val_loss"]:.4f} | {d} |')
PY
echo "appended to $results" >&2
