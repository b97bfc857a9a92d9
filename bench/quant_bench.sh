#!/bin/sh
# LoRA on a quantized frozen base (--base-dtype, docs/quant.md) against f32 and bf16 bases, in one invocation:
#   memory and speed: peak RSS (/usr/bin/time -v) and median step time (steps 3..N) of build/train_bench,
#     LoRA r8 on all linears, on stories260K (shared data) and gpt2-small / llama-1b (random, `ftc init`)
#   quality: the same seeded `ftc train` LoRA run (all linears) for each base type, held-out loss of the base as
#     held (before training: what quantization alone costs) and after the run, and the run's peak RSS:
#     stories260K on Banking77's texts (train.csv's first 2000 for training, test.csv's first 500 held out) and
#     SmolLM2-135M-Instruct from its Q4_1 GGUF (scripts/find-smollm2.sh) on examples/assistant (train.jsonl;
#     val.jsonl held out)
#
#   sh bench/quant_bench.sh [FTC_BIN]
# Environment: QB_SHAPES (default "stories260K gpt2-small llama-1b"; "" skips the memory/speed rows), QB_STEPS (5),
#   QB_MODELS (build/bench-models), QB_RESULTS (bench/RESULTS.md), QB_QUALITY (1; 0 skips the quality runs),
#   QB_QMODELS (the quality runs' models, default "stories260K smollm2"), QB_TRAIN_STEPS (60, stories260K's
#   quality runs), QB_SMOL_STEPS (20, SmolLM2's), QB_QRUNS (keep the quality runs' directories there),
#   QB_QREUSE (1: a quality run whose QB_QRUNS directory holds eval.json is not run again, e.g. after runs split
#   between parallel invocations),
#   QB_BASES (base:precision pairs for every shape instead of the lists below, e.g. "bf16:fp32 nf4:fp32 nf4dq:fp32"),
#   QB_QBASES (the quality runs' bases, default "fp32 bf16 q8_0 q4_0 q4_1 q4_k nf4 nf4dq"),
#   QB_CKPT (0; 1: every run with --grad-checkpoint, the memory rows and the quality runs)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ftc=${1:-$root/build/ftc}
bindir=$(cd "$(dirname "$ftc")" && pwd)
driver=$bindir/train_bench
models=${QB_MODELS:-$root/build/bench-models}
results=${QB_RESULTS:-$here/RESULTS.md}
steps=${QB_STEPS:-5}
ckpt=${QB_CKPT:-0}
ckflag=""
[ "$ckpt" = 1 ] && ckflag=--grad-checkpoint
shapes=${QB_SHAPES-stories260K gpt2-small llama-1b}
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
  if [ -n "${QB_BASES:-}" ]; then echo "$QB_BASES"; return; fi
  case $1 in llama-1b) echo "f32:fp32 bf16:fp32 q8_0:fp32 q4_0:fp32 nf4:fp32 nf4dq:fp32 bf16:bf16 q8_0:bf16 q4_0:bf16 nf4:bf16 nf4dq:bf16" ;;
    *) echo "f32:fp32 bf16:fp32 q8_0:fp32 q4_0:fp32 q4_k:fp32 nf4:fp32 nf4dq:fp32 bf16:bf16 q8_0:bf16 q4_0:bf16 q4_k:bf16 nf4:bf16 nf4dq:bf16" ;; esac
}

rows=$tmp/rows
: >"$rows"
for s in $shapes; do
  dir=$(model_dir "$s")
  for bp in $(bases "$s"); do
    b=${bp%%:*} p=${bp##*:}
    echo "== $s base $b precision $p" >&2
    if /usr/bin/time -v "$driver" --model "$dir" $(shape_args "$s") --steps "$steps" --method lora --lora-r 8 \
         --precision "$p" --base-dtype "$b" --grad-checkpoint "$ckpt" >"$tmp/out" 2>"$tmp/err"; then
      rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tmp/err")
      tail -1 "$tmp/out" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["rss_mb"]=int(sys.argv[1])/1024; d["shape"]=sys.argv[2]; print(json.dumps(d))' "$rss" "$s" >>"$rows"
    else
      echo "failed: $s $b $p" >&2
      tail -3 "$tmp/err" >&2
    fi
  done
done

# quality: the same LoRA run for each base type, per model (qmodel, qtrain, qval, qargs, qsteps)
qrows=$tmp/qrows
qruns=${QB_QRUNS:-$tmp}
: >"$qrows"
[ "${QB_QUALITY:-1}" = 1 ] || QB_QMODELS=""
for qm in ${QB_QMODELS-stories260K smollm2}; do
  case $qm in
    stories260K)
      qmodel=$shared/models/stories260K-hf qtrain=$tmp/train.jsonl qval=$tmp/test.jsonl qsteps=${QB_TRAIN_STEPS:-60}
      [ -f "$qmodel/config.json" ] && [ -f "$shared/banking77/train.csv" ] || { echo "quality: no $qm or Banking77, skipped" >&2; continue; }
      python3 "$here/banking77_texts.py" "$shared/banking77" "$tmp"
      qargs="--lora-r 8 --lr 3e-3 --batch 16 --max-len 64" ;;
    smollm2)
      qmodel=$(sh "$root/scripts/find-smollm2.sh") qtrain=$root/examples/assistant/train.jsonl
      qval=$root/examples/assistant/val.jsonl qsteps=${QB_SMOL_STEPS:-20}
      [ -n "$qmodel" ] || { echo "quality: SmolLM2 GGUF not installed (scripts/install-deps.sh), skipped" >&2; continue; }
      # examples/assistant/run.sh's LoRA (r16, alpha 32, lr 3e-3, batch 4), cut to qsteps steps
      qargs="--lora-r 16 --lora-alpha 32 --lr 3e-3 --batch 4 --max-len 512 --warmup 0.1" ;;
    *) echo "quality: unknown model $qm" >&2; exit 2 ;;
  esac
  for b in ${QB_QBASES:-fp32 bf16 q8_0 q4_0 q4_1 q4_k nf4 nf4dq}; do
    echo "== quality $qm base $b" >&2
    out=$qruns/q-$qm-$b
    if [ "${QB_QREUSE:-0}" = 1 ] && [ -f "$out/eval.json" ]; then
      echo "   (reusing $out)" >&2
    else
      rm -rf "$out"
      # shellcheck disable=SC2086
      /usr/bin/time -v -o "$out.time" "$ftc" train --model "$qmodel" --data "$qtrain" --val "$qval" --task causal-lm \
        --method lora --lora-targets all-linear $qargs --max-steps "$qsteps" --eval-every "$qsteps" --seed 1 \
        --samples 0 --base-dtype "$b" $ckflag --quiet --out "$out" >/dev/null 2>"$tmp/qerr" ||
        { echo "quality run $qm $b failed:" >&2; tail -3 "$tmp/qerr" >&2; continue; }
    fi
    python3 - "$out" "$qm" "$b" "$out.time" >>"$qrows" <<'PY'
import json, re, sys
out, model, base, timef = sys.argv[1:5]
ev = json.load(open(f"{out}/eval.json"))
first = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if '"loss"' in l][0]
try:  # a reused run may lack its /usr/bin/time record
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(timef).read()).group(1)) / 1024
except (OSError, AttributeError):
    rss = None
print(json.dumps({"model": model, "base": base, "base_loss": ev["base"]["loss"], "val_loss": ev["tuned"]["loss"],
                  "first_train_loss": first["loss"], "rss_mb": rss}))
PY
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$rows" "$qrows" "$cpu" "$commit" "$load0" "$load1" "$steps" "${QB_TRAIN_STEPS:-60}" "${QB_SMOL_STEPS:-20}" "$ckpt" >>"$results" <<'PY'
import json, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
q = [json.loads(l) for l in open(sys.argv[2])]
cpu, commit, l0, l1, steps, tsteps, ssteps, ckpt = sys.argv[3:11]
ck = ", with --grad-checkpoint" if ckpt == "1" else ""
print(f"\n## LoRA on a quantized base (`bench/quant_bench.sh`), {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit {commit}\n")
print(f"{cpu}, 2 threads; load average {l0} at the start, {l1} at the end (other jobs share the 2 cores: "
      "times are noisy, RSS and losses are not).\n")
if rows:
    print(f"LoRA r8 on all linears{ck}, median step of steps 3..{steps}; ratios against the bf16 base at the same precision.\n")
    print("| model | B x T | base | precision | step s | vs bf16 base | peak RSS MB | vs bf16 base | load s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ref = {(r["shape"], r["precision"]): r for r in rows if r["base_dtype"] == "bf16"}
    for r in rows:
        b = ref.get((r["shape"], r["precision"]))
        st = f'{r["step_s_median"] / b["step_s_median"]:.2f}x' if b else "-"
        rs = f'{r["rss_mb"] / b["rss_mb"]:.2f}x' if b else "-"
        print(f'| {r["shape"]} | {r["batch"]} x {r["seq"]} | {r["base_dtype"]} | {r["precision"]} | {r["step_s_median"]:.3f} | {st} | '
              f'{r["rss_mb"]:.0f} | {rs} | {r["load_s"]:.1f} |')
what = {"stories260K": f"stories260K, LoRA r8 (all linears) on Banking77 texts (2000 train / 500 held out), {tsteps} steps of 16 x 64, "
                       "lr 3e-3, seed 1; its q4_k is q4_1 (64 is no multiple of 256)",
        "smollm2": f"SmolLM2-135M-Instruct from its Q4_1 GGUF, LoRA r16 alpha 32 (all linears) on examples/assistant "
                   f"(train.jsonl; held out: val.jsonl, 34 conversations), {ssteps} steps of batch 4, lr 3e-3, warmup 0.1, seed 1; "
                   "its q4_k is q4_1 where 256 does not divide the row (576)"}
for model in dict.fromkeys(x["model"] for x in q):
    xs = [x for x in q if x["model"] == model]
    ref = next((x for x in xs if x["base"] == "bf16"), None)
    rel = lambda x, k: f'{100 * (x[k] / ref[k] - 1):+.2f}%' if ref else "-"
    print(f"\nHeld-out loss, {what[model]}{ck}; before = the base as held, no adapter (what quantization alone costs):\n")
    print("| base | held-out loss before | vs bf16 base | first train loss | held-out loss after | vs bf16 base | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for x in xs:
        rss = "-" if x["rss_mb"] is None else f'{x["rss_mb"]:.0f}'
        print(f'| {x["base"]} | {x["base_loss"]:.4f} | {rel(x, "base_loss")} | {x["first_train_loss"]:.4f} | '
              f'{x["val_loss"]:.4f} | {rel(x, "val_loss")} | {rss} |')
PY
echo "appended to $results" >&2
