#!/bin/sh
# ftc vs the PyTorch dequantize-per-call peer (bench/quant_torch_peer.py, issue 18): the same SmolLM2 LoRA run on a
# q8_0 and a q4_0 base, alternated (ftc, peer, ftc, peer, ... per base, QP_REPS rounds), tokens/s (medians) and
# peak RSS into bench/RESULTS.md. Both sides: SmolLM2-135M-Instruct from its Q4_1 GGUF (PyTorch reads ftc's HF
# export of it), examples/assistant/train.jsonl, LoRA r16 alpha 32 on every linear, lr 3e-3, warmup 0.1, batch 4,
# max length 512, QP_STEPS steps, 2 threads; the LM head / tied token table in Q8_0 on both sides.
#
#   sh bench/quant_torch_peer.sh [FTC_BIN]
# Environment: QP_BASES ("q8_0 q4_0"), QP_STEPS (20), QP_REPS (2), QP_HF (where the HF export is kept,
#   build/smollm2-hf), QP_RESULTS (bench/RESULTS.md). Needs /usr/bin/python3 with torch, transformers, gguf.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ftc=${1:-$root/build/ftc}
gguf=$(sh "$root/scripts/find-smollm2.sh")
[ -n "$gguf" ] || { echo "quant_torch_peer: SmolLM2 GGUF not installed (scripts/install-deps.sh)" >&2; exit 2; }
hf=${QP_HF:-$root/build/smollm2-hf}
steps=${QP_STEPS:-20}
results=${QP_RESULTS:-$here/RESULTS.md}
train=$root/examples/assistant/train.jsonl
val=$root/examples/assistant/val.jsonl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
[ -f "$hf/model.safetensors" ] || "$ftc" export --model "$gguf" --format hf --out "$hf" >&2
load0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$tmp/rows"
for rep in $(seq "${QP_REPS:-2}"); do
  for b in ${QP_BASES:-q8_0 q4_0}; do
    echo "== round $rep base $b: ftc" >&2
    rm -rf "$tmp/run"
    /usr/bin/time -v -o "$tmp/time" "$ftc" train --model "$gguf" --data "$train" --task causal-lm --method lora \
      --lora-targets all-linear --lora-r 16 --lora-alpha 32 --lr 3e-3 --warmup 0.1 --batch 4 --max-len 512 \
      --max-steps "$steps" --seed 42 --samples 0 --base-dtype "$b" --quiet --out "$tmp/run" >/dev/null
    python3 - "$tmp/run/metrics.jsonl" "$tmp/time" "$b" >>"$tmp/rows" <<'PY'
import json, re, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"tok_s"' in l]
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[2]).read()).group(1)) / 1024
print(json.dumps({"side": "ftc", "base": sys.argv[3], "tokens_per_s": m[-1]["tok_s"], "peak_rss_mb": rss,
                  "peak_rss_mb_train": None, "heldout_loss_base": None}))
PY
    echo "== round $rep base $b: PyTorch" >&2
    /usr/bin/python3 "$here/quant_torch_peer.py" --base-dtype "$b" --ftc "$ftc" --gguf "$gguf" --hf "$hf" \
      --train "$train" --test "$val" --lr 3e-3 --max-steps "$steps" >"$tmp/peer.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(side="pytorch", base=sys.argv[2]); print(json.dumps(d))' \
      "$tmp/peer.json" "$b" >>"$tmp/rows"
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$tmp/rows" "$load0" "$load1" "$steps" "$(git -C "$root" rev-parse --short HEAD)" \
  "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" >>"$results" <<'PY'
import json, statistics, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
l0, l1, steps, commit, cpu = sys.argv[2:7]
print(f"\n## SmolLM2 LoRA on a quantized base: ftc vs the PyTorch dequantize-per-call peer (`bench/quant_torch_peer.sh`), "
      f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit {commit}\n")
print(f"{cpu}, 2 threads each; load average {l0} at the start, {l1} at the end. ftc and PyTorch alternated per base; "
      f"{steps} steps of examples/assistant, LoRA r16 alpha 32 on every linear; medians of the rounds; PyTorch's peak RSS "
      "of the whole process and of the training steps alone (VmHWM reset after loading and packing).\n")
print("| base | ftc tokens/s | PyTorch tokens/s | ftc / PyTorch | ftc peak RSS MB | PyTorch peak RSS MB (training steps) | rounds |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for b in dict.fromkeys(r["base"] for r in rows):
    f = [r for r in rows if r["base"] == b and r["side"] == "ftc"]
    p = [r for r in rows if r["base"] == b and r["side"] == "pytorch"]
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    print(f'| {b} | {med(f, "tokens_per_s"):.1f} | {med(p, "tokens_per_s"):.1f} | '
          f'{med(f, "tokens_per_s") / med(p, "tokens_per_s"):.2f}x | {med(f, "peak_rss_mb"):.0f} | '
          f'{med(p, "peak_rss_mb"):.0f} ({med(p, "peak_rss_mb_train"):.0f}) | {len(f)} |')
PY
echo "appended to $results" >&2
