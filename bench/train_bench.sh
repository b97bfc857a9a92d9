#!/bin/sh
# Training throughput of ftc against PyTorch on the standard shapes (../shared/docs/BENCHMARKS.md), measured
# alternately in one invocation, on the same random weights (written once by `ftc init`).
#
#   sh bench/train_bench.sh [FTC_BIN]        (default build/ftc; bench/run.sh and `make bench` call it)
#
# Environment:
#   BENCH_FULL=1     also the long shapes: gpt2-small B1xT1024, gpt2-small LoRA, llama-1b-lora (BF16 base)
#   BENCH_BF16=0     skip the bf16 rows (ours --precision bf16 vs PyTorch autocast bf16; default: run them)
#   BENCH_RUNS=N     alternations per shape (default 3 for minilm-cls, 2 for the others; BENCH_FULL: 3)
#   BENCH_MODELS=DIR where the random models are kept between runs (default build/bench-models)
#   BENCH_RESULTS=F  file the results are appended to (default bench/RESULTS.md)
#   BENCH_SHAPES=a,b only the shapes whose label contains one of these (e.g. BENCH_FULL=1 BENCH_SHAPES=llama)
#   BENCH_NOTES=text replaces the default note on the machine's load
# For each shape: ours = build/train_bench, peer = bench/torch_train_peer.py (/usr/bin/python3, 2 threads),
# each under /usr/bin/time -v for the peak RSS; tokens/s = B*T / median step time over steps 3..N; the
# figure is the median over the runs; MFU = tokens/s x model FLOPs per token / measured sgemm peak.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ftc=${1:-$root/build/ftc}
bindir=$(cd "$(dirname "$ftc")" 2>/dev/null && pwd || echo "$root/build")
ftc=$bindir/$(basename "$ftc")
driver=$bindir/train_bench
models=${BENCH_MODELS:-$root/build/bench-models}
results=${BENCH_RESULTS:-$here/RESULTS.md}
full=${BENCH_FULL:-0}
peer_py=/usr/bin/python3
# Run from the root so that the commands recorded in RESULTS.md are short and can be pasted as they are.
cd "$root"
case "$driver" in "$root"/*) driver=${driver#"$root"/} ;; esac
case "$models" in "$root"/*) models=${models#"$root"/} ;; esac
here=bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2

# The driver is not built by default (EXCLUDE_FROM_ALL): build it here, quietly; a failure means no ftc side.
[ -f "$bindir/CMakeCache.txt" ] && cmake --build "$bindir" --target train_bench >/dev/null 2>&1 || true
have_ours=1
if [ ! -x "$ftc" ] || ! "$ftc" init --help >/dev/null 2>&1 || [ ! -x "$driver" ]; then
  have_ours=0
  echo "train_bench: ftc init or $driver missing: timing the PyTorch peer alone" >&2
fi
if ! "$peer_py" -c "import torch, transformers" 2>/dev/null; then
  echo "train_bench: $peer_py lacks torch/transformers: no PyTorch peer (see docs/DEVELOPING.md)" >&2
  exit 1
fi

# Machine and build, for the record.
date_utc=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cores=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)

# The MFU denominator: a large square sgemm through ftc_matmul (our best kernel), both cores.
peak_json=""
peak=""
if [ "$have_ours" = 1 ]; then
  peak_json=$("$driver" --peak --size 2048 --reps 10)
  peak=$(echo "$peak_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["gflops_best"])')
  echo "peak: $peak_json"
fi

model_dir() { # NAME DTYPE -> a random model written once by ftc init (or by transformers if ours is missing)
  d=$models/$1-$2
  if [ ! -f "$d/model.safetensors" ] || [ "$here/configs/$1.json" -nt "$d/model.safetensors" ]; then
    mkdir -p "$models"
    if [ "$have_ours" = 1 ]; then
      "$ftc" init --config "$here/configs/$1.json" --out "$d" --seed 1 --dtype "$2" --force >&2
    else
      echo "$1: no ftc init: the peer builds the model from the config with transformers' init" >&2
      echo "$here/configs/$1.json"
      return
    fi
  fi
  echo "$d"
}

# run_side OUT_PREFIX CMD...: runs CMD under /usr/bin/time -v; OUT_PREFIX.json gets its JSON line plus the RSS.
run_side() {
  out=$1; shift
  if /usr/bin/time -v "$@" >"$out.stdout" 2>"$out.stderr"; then
    rss_kb=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$out.stderr")
    tail -1 "$out.stdout" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["time_v_rss_mb"]=int(sys.argv[1])/1024; print(json.dumps(d))' "$rss_kb" >>"$out.json"
  else
    echo "train_bench: failed: $*" >&2
    grep -v '^ftc step\|^peer step\|^\s' "$out.stderr" | tail -5 >&2
  fi
}

rows=$tmp/rows
: >"$rows"
# bench_shape LABEL CONFIG DTYPE B T STEPS RUNS METHOD LORA_R [PRECISION]
# PRECISION bf16: ours --precision bf16 (with DTYPE bf16 and lora: a bf16 base), the peer under autocast bf16.
bench_shape() {
  label=$1 config=$2 dtype=$3 B=$4 T=$5 steps=$6 runs=$7 method=$8 r=$9 prec=${10:-fp32}
  if [ -n "${BENCH_SHAPES:-}" ]; then # a comma-separated list of substrings of the labels
    case ",$BENCH_SHAPES," in *",$label,"*) ;; *)
      wanted=0
      for w in $(echo "$BENCH_SHAPES" | tr ',' ' '); do case "$label" in *"$w"*) wanted=1 ;; esac; done
      [ "$wanted" = 1 ] || return 0 ;;
    esac
  fi
  dir=$(model_dir "$config" "$dtype")
  src="--model $dir"
  case "$dir" in *.json) src="--config $dir" ;; esac
  peer_base=f32
  [ "$dtype" = bf16 ] && peer_base=bf16
  ours_base=f32
  [ "$dtype" = bf16 ] && [ "$method" = lora ] && ours_base=bf16
  ours_cmd="$driver --model $dir --batch $B --seq $T --steps $steps --method $method --lora-r $r --precision $prec --base-dtype $ours_base"
  peer_cmd="$peer_py $here/torch_train_peer.py $src --batch $B --seq $T --steps $steps --method $method --lora-r $r --base-dtype $peer_base --precision $prec --threads 2"
  echo "== $label: B$B x T$T, $method, $steps steps, $runs runs (alternating)" >&2
  i=1
  while [ "$i" -le "$runs" ]; do
    [ "$have_ours" = 1 ] && run_side "$tmp/$label.ours" $ours_cmd
    run_side "$tmp/$label.peer" $peer_cmd
    i=$((i + 1))
  done
  python3 - "$tmp/$label" "$label" "${peak:-0}" "$ours_cmd" "$peer_cmd" >>"$rows" <<'EOF'
import json, os, statistics, sys
prefix, label, peak, ours_cmd, peer_cmd = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
def load(side):
    p = f"{prefix}.{side}.json"
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def summary(runs):
    if not runs:
        return None
    tps = [r["tokens_per_s"] for r in runs]
    return dict(tps=statistics.median(tps), lo=min(tps), hi=max(tps), n=len(tps), rss=max(r["time_v_rss_mb"] for r in runs),
                fpt=runs[0]["flops_per_token"], trainable=runs[0]["params_trainable"], total=runs[0]["params_total"],
                base=runs[0]["base_dtype"], method=runs[0]["method"], prec=runs[0].get("precision", "fp32"),
                planned=runs[0].get("planned_mb"), act=runs[0].get("activation_mb"))
o, p = summary(load("ours")), summary(load("peer"))
def fmt_tps(s): return "—" if not s else f"{s['tps']:.0f} ({s['lo']:.0f}-{s['hi']:.0f}, n={s['n']})"
def mfu(s): return "—" if not s or peak <= 0 else f"{100 * s['tps'] * s['fpt'] / 1e9 / peak:.1f}%"
ratio = f"{o['tps'] / p['tps']:.2f}x" if o and p else "—"
ref = o or p
notes = []
if ref:
    notes.append(f"{ref['fpt'] / 1e6:.0f} MFLOP/token, {ref['trainable'] / 1e6:.2f}M of {ref['total'] / 1e6:.1f}M params trained")
if ref and ref["prec"] == "bf16":
    notes.append("bf16 matmuls (ours --precision bf16, PyTorch autocast bf16)")
if ref and ref["method"] == "full":  # AdamW full fine-tune floor: weights, grads, 2 moments, 4 bytes each
    notes.append(f"16 B/param = {16 * ref['total'] / 2**20:.0f} MB + activations")
if o and o.get("planned"):  # BENCHMARKS.md: peak RSS at most 1.2x what the memory plan says
    notes.append(f"ours planned {o['planned']:.0f} MB (weights as stored + 12 B/trainable param for grad and AdamW "
                 f"+ {o['act']:.0f} MB activations): RSS/planned {o['rss'] / o['planned']:.2f}")
if o and p and abs(o["fpt"] / p["fpt"] - 1) > 0.02:
    notes.append(f"FLOP counts differ: ours {o['fpt'] / 1e6:.0f}M, PyTorch {p['fpt'] / 1e6:.0f}M per token")
if o and p and o["base"] != p["base"]:
    notes.append(f"base weights: ours {o['base']}, PyTorch {p['base']}")
if not o:
    notes.append("ours not measured (ftc init / model not built)")
row = (f"| {label} | {fmt_tps(o)} | {fmt_tps(p)} | {ratio} | {mfu(o)} | {mfu(p)} | "
       f"{'—' if not o else round(o['rss'])} | {'—' if not p else round(p['rss'])} | {'; '.join(notes)} |")
print(json.dumps({"row": row, "ours_cmd": ours_cmd if o else "", "peer_cmd": peer_cmd}))
EOF
  tail -1 "$rows" | python3 -c 'import json,sys; print(json.load(sys.stdin)["row"])'
}

runs_short=${BENCH_RUNS:-3}
runs_long=${BENCH_RUNS:-2}
[ "$full" = 1 ] && runs_long=${BENCH_RUNS:-3}
bench_shape minilm-cls minilm-cls f32 32 64 8 "$runs_short" full 8
bench_shape gpt2-small-B4xT256 gpt2-small f32 4 256 5 "$runs_long" full 8
if [ "${BENCH_BF16:-1}" = 1 ]; then # BF16 target: >= 1.5x our own fp32 row above
  bench_shape minilm-cls-bf16 minilm-cls f32 32 64 8 "$runs_short" full 8 bf16
  bench_shape gpt2-small-B4xT256-bf16 gpt2-small f32 4 256 5 "$runs_long" full 8 bf16
fi
if [ "$full" = 1 ]; then
  bench_shape gpt2-small-B1xT1024 gpt2-small f32 1 1024 5 "$runs_long" full 8
  bench_shape gpt2-small-lora-B4xT256 gpt2-small f32 4 256 5 "$runs_long" lora 8
  bench_shape gpt2-small-lora-B1xT1024 gpt2-small f32 1 1024 5 "$runs_long" lora 8
  bench_shape llama-1b-lora-B1xT256 llama-1b bf16 1 256 4 "$runs_long" lora 16
fi

[ -s "$rows" ] || { echo "train_bench: no shape selected (BENCH_SHAPES=${BENCH_SHAPES:-})" >&2; exit 0; }
# Append one block to RESULTS.md: a header line per invocation, the table, the exact commands.
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
mode=quick
[ "$full" = 1 ] && mode="full (BENCH_FULL=1)"
notes=${BENCH_NOTES:-the CPU is shared with other jobs, so absolute figures are noisy; the ratio, measured alternately, less so}
python3 - "$rows" "$results" "$notes" <<EOF
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
path = sys.argv[2]
new = not os.path.exists(path)
with open(path, "a") as f:
    if new:
        f.write("# Benchmark results\n\nRows are appended by the benchmark scripts; old rows are kept.\n")
    f.write("\n## Training: ftc vs PyTorch, $date_utc, commit $commit\n\n")
    f.write("Machine: $cpu, $cores cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; load average $load before, "
            "$load_after after. Mode: $mode.\n")
    peak = "$peak"
    f.write(("Peak (MFU denominator): " + peak + " GFLOP/s fp32 measured (train_bench --peak: 2048^3 ftc_matmul, best of 10); "
             if peak else "Peak: not measured (no ftc build); ") + "theoretical 2 cores x 2 x 512-bit FMA x clock, about 375 GFLOP/s.\n")
    f.write("tokens/s: median over runs of each run's median step (steps 3..N), min-max over runs in brackets; "
            "RSS: peak over runs (/usr/bin/time -v), MB.\n\n")
    f.write("| shape | ours tok/s | PyTorch tok/s | ratio | MFU ours | MFU PyTorch | RSS ours | RSS PyTorch | notes |\n")
    f.write("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        f.write(r["row"] + "\n")
    f.write("\nCommands:\n")
    for r in rows:
        for k in ("ours_cmd", "peer_cmd"):
            if r[k]:
                f.write(f"- \`{r[k]}\`\n")
    f.write("\nNotes: " + sys.argv[3] + ".\n")
EOF
echo "train_bench: appended to $results" >&2
