#!/bin/sh
# make check-llamacpp: ftc's GGUF export checked against llama.cpp itself (built by scripts/build-llamacpp.sh).
# Not CI: needs the llama.cpp build, the SmolLM2 GGUF, and for the converter comparison the Python reference stack
# (Debian torch 1.13, transformers, sentencepiece, gguf, jinja2 for /usr/bin/python3).
#   sh scripts/check-llamacpp.sh [build/ftc]
# Environment: SKIP_CONVERT=1 (skip the converter comparison), FTC_CHECK_DIR (work directory, default a fresh temporary one, kept), FTC_TUNED_RUN (a LoRA run of
# SmolLM2, e.g. from examples/smollm2/run.sh; default /tmp/ftc-smollm2-faq when it exists), N (tokens, default 64).
# Checks, each printed with PASS/FAIL:
#   1. llama.cpp's convert_hf_to_gguf.py on the same HF checkpoint (SmolLM2's HF export; stories260K-hf): the PyPI
#      gguf reader parses both; tensor names, shapes, types, bytes and metadata keys/values compared;
#   2. SmolLM2 exported f32 and bf16: llama.cpp's greedy text (llama-simple) on each file = ftc generate on the same
#      file over N tokens, and the chat answer (ChatML prompt) = ftc chat, stopping at the end of turn; for bf16 also
#      ftc with --precision bf16 (bf16 products, as llama.cpp's), reported, not required (see docs/gguf.md);
#   3. the tuned run exported f32/bf16: the same for two FAQ questions on each file; its gguf-lora on the base in
#      llama-completion against ftc chat on the run;
#   4. the Modelfile's TEMPLATE rendered as Ollama does = the Jinja chat template;
#   5. SmolLM2's logits in llama.cpp (tools/llamacpp_logits.c, compiled here against $LCP/build's static libraries)
#      along its greedy path = ftc logits on the same ids: f32 within 1e-3 (KV cache f32, no flash attention);
#      llama.cpp's defaults and the bf16 export printed.
set -u
FTC=${1:-build/ftc}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
LCP=$(sh "$here/build-llamacpp.sh" --print) || { echo "check-llamacpp: llama.cpp is not built: run make llamacpp" >&2; exit 1; }
SMOL=$(sh "$here/find-smollm2.sh")
[ -n "$SMOL" ] || { echo "check-llamacpp: SmolLM2 GGUF not installed (scripts/install-deps.sh)" >&2; exit 1; }
W=${FTC_CHECK_DIR:-$(mktemp -d /tmp/ftc-check-llamacpp.XXXXXX)}
mkdir -p "$W"
export FTC_CACHE_DIR=$W/cache
N=${N:-64}
RUN=${FTC_TUNED_RUN:-/tmp/ftc-smollm2-faq}
PY=/usr/bin/python3
fails=0
pass() { echo "PASS: $*"; }
failed() { echo "FAIL: $*"; fails=$((fails + 1)); }
echo "== llama.cpp: $(cat "$LCP/STAMP")"
echo "== work directory: $W; load: $(uptime | sed 's/.*load/load/')"

# ---- 1. metadata and tensors against llama.cpp's converter ----
"$FTC" export --model "$SMOL" --format hf --out "$W/smol-hf" --force >/dev/null || failed "export SmolLM2 HF"
"$FTC" export --model "$W/smol-hf" --format gguf --out "$W/smol-f32.gguf" --force >/dev/null || failed "export f32"
"$FTC" export --model "$W/smol-hf" --format gguf --type bf16 --out "$W/smol-bf16.gguf" --force >/dev/null || failed "export bf16"
cmp_conv() { # cmp_conv NAME HF_DIR FTC_GGUF OUTTYPE
  if $PY "$root/tools/llamacpp_convert.py" "$LCP/src" hf "$2" --outtype "$4" --outfile "$W/$1-llamacpp.gguf" >"$W/$1-convert.log" 2>&1; then
    echo "-- $1 ($4): ftc export vs llama.cpp convert_hf_to_gguf.py"
    if $PY "$root/tools/check_gguf_export.py" compare "$3" "$W/$1-llamacpp.gguf"; then pass "$1: same tensors and keys as llama.cpp's converter"
    else failed "$1: differs from llama.cpp's converter"; fi
  else
    tail -3 "$W/$1-convert.log"; failed "$1: llama.cpp's converter did not run (Python reference stack?)"
  fi
}
[ -n "${SKIP_CONVERT:-}" ] || cmp_conv smollm2 "$W/smol-hf" "$W/smol-f32.gguf" f32
[ -n "${SKIP_CONVERT:-}" ] || cmp_conv smollm2-bf16 "$W/smol-hf" "$W/smol-bf16.gguf" bf16
STORIES=$root/../shared/data/models/stories260K-hf
if [ -f "$STORIES/tokenizer.json" ] && [ -z "${SKIP_CONVERT:-}" ]; then
  "$FTC" export --model "$STORIES" --format gguf --out "$W/stories-f32.gguf" --force >/dev/null || failed "export stories260K"
  cmp_conv stories260K "$STORIES" "$W/stories-f32.gguf" f32
fi

# ---- tokenizers in llama.cpp: llama-tokenize on every 7th corpus line, ids against HF's; ftc's export must do at
# least as well as the GGUF of llama.cpp's own converter ----
tok() { $PY "$root/tools/check_gguf_export.py" tokenize "$LCP/bin/llama-tokenize" "$@" | tee "$W/tok.out" >&2; sed 's/.*: //' "$W/tok.out"; }
tok_cmp() { # tok_cmp LABEL FTC_GGUF CONVERTER_GGUF FIXTURE [CORPUS]
  l=$1 a=$2 b=$3; shift 3
  x=$(tok "$a" "$@") || x=999999
  if [ -f "$b" ]; then y=$(tok "$b" "$@") || y=-1; else y=$x; fi
  [ "$x" -le "$y" ] && pass "$l in llama-tokenize: $x lines differ from HF (llama.cpp's converter's GGUF: $y)" ||
    failed "$l in llama-tokenize: $x lines differ from HF (llama.cpp's converter's GGUF: $y)"
}
tok_cmp "SmolLM2 tokenizer" "$W/smol-f32.gguf" "$W/smollm2-llamacpp.gguf" "$root/tests/fixtures/gguf/tok_smollm2.jsonl" 2>&1
[ -f "$W/stories-f32.gguf" ] && tok_cmp "stories260K tokenizer" "$W/stories-f32.gguf" "$W/stories260K-llamacpp.gguf" \
  "$root/tests/fixtures/tok_stories260K.0.jsonl" "$root/tests/fixtures/tokenizer_corpus.jsonl" 2>&1

# ---- 2./3. greedy text: llama.cpp vs ftc ----
# the ChatML prompt ftc chat renders (SmolLM2's template with its default system prompt); the x keeps the final
# newline through $(...)
chatml() { printf '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\nx' "$1"; }
lcp_simple() { # lcp_simple GGUF PROMPT [TOKENS] -> generated text only (llama-simple prints the prompt first)
  "$LCP/bin/llama-simple" -m "$1" -n "${3:-$N}" "$2" 2>"$W/lcp.err" >"$W/lcp.out"
  $PY -c 'import sys; p=sys.argv[1]; t=open(sys.argv[2],encoding="utf-8",errors="replace").read(); print(t[len(p):] if t.startswith(p) else "<<prompt not echoed>>"+t, end="")' "$2" "$W/lcp.out"
}
lcp_tokens() { sed -n 's/.*decoded \([0-9]*\) tokens.*/\1/p' "$W/lcp.err" | tail -1; }
same() { # same LABEL LLAMA_TEXT FTC_TEXT [soft]: soft reports a difference without failing
  if [ "$2" = "$3" ]; then
    if [ "${4:-}" = soft ]; then echo "NOTE: $1: llama.cpp = ftc"; else
      pass "$1: llama.cpp = ftc: $(printf '%s' "$2" | head -c 160 | tr '\n' ' ')"; fi
    return
  fi
  c=$($PY -c 'import os,sys; a,b=sys.argv[1],sys.argv[2]; print(len(os.path.commonprefix([a,b])))' "$2" "$3")
  if [ "${4:-}" = soft ]; then
    echo "NOTE: $1: equal for the first $c characters, then differ (llama.cpp's quantized dot products quantize the"
    echo "      activations too; ftc computes on the dequantized weights: see docs/gguf.md)"
  else failed "$1 (equal for the first $c characters)"; fi
  printf '   llama.cpp: %s\n   ftc:       %s\n' "$2" "$3"
}
# bf16 products (ftc --precision bf16, llama.cpp on BF16 weights) round each activation to 8 bits: a rounding that
# goes the other way after a 1e-7 difference upstream moves the logits by ~0.2 (docs/gguf.md), so two
# implementations agree only up to that. Shown for information: the required check is ftc's default on the file.
note_bf16() { # note_bf16 LABEL LLAMA_TEXT FTC_BF16_TEXT
  if [ "$2" = "$3" ]; then echo "NOTE: $1 with --precision bf16: also equal"; return; fi
  c=$($PY -c 'import os,sys; a,b=sys.argv[1],sys.argv[2]; print(len(os.path.commonprefix([a,b])))' "$2" "$3")
  echo "NOTE: $1 with --precision bf16: equal for the first $c characters, then a near-tie goes the other way"
}
# ftc on the same GGUF file llama.cpp runs: f32 weights, or the bf16 weights (widened to f32 when ftc converts the
# file; products in f32)
for ty in f32 bf16; do
  G=$W/smol-$ty.gguf
  for p in "The capital of France is" "def fibonacci(n):"; do
    l=$(lcp_simple "$G" "$p")
    f=$("$FTC" generate --model "$G" --prompt "$p" --max-tokens "$N" 2>/dev/null)
    same "SmolLM2 $ty, '$p', $N tokens" "$l" "$f"
    if [ $ty = bf16 ]; then
      f=$("$FTC" generate --model "$G" --prompt "$p" --max-tokens "$N" --precision bf16 2>/dev/null)
      note_bf16 "SmolLM2 $ty, '$p'" "$l" "$f"
    fi
  done
  q="What is the capital of France?"
  P=$(chatml "$q"); P=${P%x}
  l=$(lcp_simple "$G" "$P"); nt=$(lcp_tokens)
  f=$(echo "$q" | "$FTC" chat --model "$G" --max-tokens "$N" 2>/dev/null)
  same "SmolLM2 $ty chat '$q' (llama.cpp stopped after $nt tokens)" "$l" "$f"
  if [ $ty = bf16 ]; then
    f=$(echo "$q" | "$FTC" chat --model "$G" --max-tokens "$N" --precision bf16 2>/dev/null)
    note_bf16 "SmolLM2 $ty chat '$q'" "$l" "$f"
  fi
done
# logits, not only the argmax: llama.cpp's along its greedy path (tools/llamacpp_logits.c, built here against the
# llama.cpp build's static libraries) against ftc logits on the same ids. f32 with llama.cpp's KV cache in f32 and
# flash attention off (its defaults keep K and V in f16): only summation orders are left, within 1e-3 required;
# with its defaults, and bf16, the differences are printed (docs/gguf.md)
LG=$W/llamacpp_logits
if cc -O2 -std=c11 "$root/tools/llamacpp_logits.c" -I"$LCP/src/include" -I"$LCP/src/ggml/include" \
     "$LCP/build/src/libllama.a" "$LCP/build/ggml/src/libggml.a" "$LCP/build/ggml/src/libggml-cpu.a" \
     "$LCP/build/ggml/src/libggml-base.a" -fopenmp -lstdc++ -lm -lpthread -ldl -o "$LG" 2>"$W/logits-build.log"; then
  lg() { # lg GGUF PROMPT [tol] (environment: KV_F32, FA_OFF)
    "$LG" "$1" "$N" "$2" "$W/lg.bin" > "$W/lg.txt" 2>"$W/lg.err" || { tail -3 "$W/lg.err"; return 1; }
    $PY "$root/tools/check_gguf_export.py" logits "$W/lg.txt" "$W/lg.bin" "$FTC" "$1" ${3:-}
  }
  for p in "The capital of France is" "def fibonacci(n):"; do
    r=$(KV_F32=1 FA_OFF=1 lg "$W/smol-f32.gguf" "$p" 1e-3) && pass "SmolLM2 f32 logits, '$p' (llama.cpp KV cache f32, no flash attention): $r" ||
      failed "SmolLM2 f32 logits, '$p': $r"
    echo "NOTE: SmolLM2 f32, '$p', llama.cpp's defaults (f16 KV cache): $(lg "$W/smol-f32.gguf" "$p")"
    echo "NOTE: SmolLM2 bf16, '$p' (llama.cpp's bf16 products, ftc's f32): $(KV_F32=1 FA_OFF=1 lg "$W/smol-bf16.gguf" "$p")"
  done
else
  tail -3 "$W/logits-build.log"; failed "tools/llamacpp_logits.c does not build against $LCP/build"
fi

# quantized exports: the gguf reader parses them; llama.cpp's text vs ftc's (ftc computes on the dequantized weights,
# llama.cpp's quantized dot products quantize the activations too: differences are notes, not failures)
for ty in q8_0 q4_0 q4_k; do
  "$FTC" export --model "$W/smol-hf" --format gguf --type $ty --out "$W/smol-$ty.gguf" --force >/dev/null || failed "export $ty"
  $PY -c 'import collections, gguf, sys; r = gguf.GGUFReader(sys.argv[1]); print(sys.argv[1], "parsed:", dict(collections.Counter(t.tensor_type.name for t in r.tensors)))' \
    "$W/smol-$ty.gguf" || failed "the gguf reader cannot parse the $ty export"
  p="The capital of France is"
  l=$(lcp_simple "$W/smol-$ty.gguf" "$p" 24)
  f=$("$FTC" generate --model "$W/smol-$ty.gguf" --prompt "$p" --max-tokens 24 2>/dev/null)
  same "SmolLM2 $ty, '$p', 24 tokens" "$l" "$f" soft
done

if [ -f "$RUN/config.resolved.json" ]; then
  "$FTC" export --model "$RUN" --format gguf --out "$W/tuned-f32.gguf" --force >/dev/null || failed "export tuned f32"
  "$FTC" export --model "$RUN" --format gguf --type bf16 --out "$W/tuned-bf16.gguf" --force >/dev/null || failed "export tuned bf16"
  "$FTC" export --model "$RUN" --format gguf-lora --out "$W/tuned-lora.gguf" --force >/dev/null || failed "export tuned gguf-lora"
  for q in "How do I unlock a bike?" "hey can i delete my account"; do
    f=$(echo "$q" | "$FTC" chat --model "$RUN" --max-tokens "$N" 2>/dev/null)
    P=$(chatml "$q"); P=${P%x}
    for ty in f32 bf16; do
      l=$(lcp_simple "$W/tuned-$ty.gguf" "$P"); nt=$(lcp_tokens)
      # the f32 export holds the run's merged weights: ftc chat on it = ftc chat on the run (also checked here)
      g=$(echo "$q" | "$FTC" chat --model "$W/tuned-$ty.gguf" --max-tokens "$N" 2>/dev/null)
      [ $ty = bf16 ] || same "tuned f32 export in ftc = the run in ftc, chat '$q'" "$g" "$f"
      same "tuned $ty chat '$q' (llama.cpp stopped after $nt tokens)" "$l" "$g"
      if [ $ty = bf16 ]; then
        g=$(echo "$q" | "$FTC" chat --model "$W/tuned-$ty.gguf" --max-tokens "$N" --precision bf16 2>/dev/null)
        note_bf16 "tuned $ty chat '$q'" "$l" "$g"
      fi
    done
    "$LCP/bin/llama-completion" -m "$W/smol-f32.gguf" --lora "$W/tuned-lora.gguf" -p "$P" -n "$N" --temp 0 \
      -no-cnv --no-display-prompt --no-warmup -c 512 2>"$W/lora.err" >"$W/lora.out" </dev/null
    l=$(sed 's/ \[end of text\]$//' "$W/lora.out")
    same "tuned via --lora (base f32 + gguf-lora, unmerged in llama.cpp) chat '$q'" "$l" "$f"
  done
  $PY "$root/tools/check_gguf_export.py" modelfile "$W/tuned-f32.Modelfile" "$W/smol-hf" && pass "tuned Modelfile template = chat template" ||
    failed "tuned Modelfile template"
else
  echo "SKIP: no tuned run at $RUN (FTC_TUNED_RUN; examples/smollm2/run.sh makes one)"
fi

# ---- 4. Modelfile ----
$PY "$root/tools/check_gguf_export.py" modelfile "$W/smol-f32.Modelfile" "$W/smol-hf" && pass "Modelfile TEMPLATE rendered as Ollama = chat template" ||
  failed "Modelfile TEMPLATE"
grep -q '^PARAMETER stop "<|im_end|>"' "$W/smol-f32.Modelfile" && pass "Modelfile stops at <|im_end|>" || failed "Modelfile stop"

# every GGUF ftc wrote here parses with the PyPI gguf reader (llama.cpp's converter outputs are skipped)
for f in "$W"/*.gguf; do
  case $f in *-llamacpp.gguf) continue ;; esac
  $PY -c 'import gguf, sys; r = gguf.GGUFReader(sys.argv[1]); print(f"{sys.argv[1]}: {len(r.tensors)} tensors, {len(r.fields)} fields")' "$f" ||
    failed "the gguf reader cannot parse $f"
done

echo "== $fails failed"
[ "$fails" = 0 ]
