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
#   2. SmolLM2 exported f32 and bf16: llama.cpp's greedy text (llama-simple) = ftc generate over N tokens, and the
#      chat answer (ChatML prompt) = ftc chat, stopping at the end of turn;
#   3. the tuned run exported f32/bf16: the same for two FAQ questions; its gguf-lora on the base in llama-completion;
#   4. the Modelfile's TEMPLATE rendered as Ollama does = the Jinja chat template.
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
lcp_simple() { # lcp_simple GGUF PROMPT -> generated text only (llama-simple prints the prompt first)
  "$LCP/bin/llama-simple" -m "$1" -n "$N" "$2" 2>"$W/lcp.err" >"$W/lcp.out"
  $PY -c 'import sys; p=sys.argv[1]; t=open(sys.argv[2],encoding="utf-8",errors="replace").read(); print(t[len(p):] if t.startswith(p) else "<<prompt not echoed>>"+t, end="")' "$2" "$W/lcp.out"
}
lcp_tokens() { sed -n 's/.*decoded \([0-9]*\) tokens.*/\1/p' "$W/lcp.err" | tail -1; }
same() { # same LABEL LLAMA_TEXT FTC_TEXT [soft]: soft (bf16) reports a difference without failing
  if [ "$2" = "$3" ]; then pass "$1: llama.cpp = ftc: $(printf '%s' "$2" | head -c 160 | tr '\n' ' ')"; return; fi
  c=$($PY -c 'import os,sys; a,b=sys.argv[1],sys.argv[2]; print(len(os.path.commonprefix([a,b])))' "$2" "$3")
  if [ "${4:-}" = soft ]; then
    echo "NOTE: $1: equal for the first $c characters, then differ (llama.cpp rounds activations to bf16 in its bf16"
    echo "      matmuls; ftc computes in f32 on the bf16 weights)"
  else failed "$1 (equal for the first $c characters)"; fi
  printf '   llama.cpp: %s\n   ftc:       %s\n' "$2" "$3"
}
for ty in f32 bf16; do
  G=$W/smol-$ty.gguf
  for p in "The capital of France is" "def fibonacci(n):"; do
    l=$(lcp_simple "$G" "$p")
    f=$("$FTC" generate --model "$G" --prompt "$p" --max-tokens "$N" 2>/dev/null)
    same "SmolLM2 $ty, '$p', $N tokens" "$l" "$f" $([ $ty = bf16 ] && echo soft)
  done
  q="What is the capital of France?"
  P=$(chatml "$q"); P=${P%x}
  l=$(lcp_simple "$G" "$P"); nt=$(lcp_tokens)
  f=$(echo "$q" | "$FTC" chat --model "$G" --max-tokens "$N" 2>/dev/null)
  same "SmolLM2 $ty chat '$q' (llama.cpp stopped after $nt tokens)" "$l" "$f" $([ $ty = bf16 ] && echo soft)
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
      same "tuned $ty chat '$q' (llama.cpp stopped after $nt tokens)" "$l" "$f" $([ $ty = bf16 ] && echo soft)
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

echo "== $fails failed"
[ "$fails" = 0 ]
