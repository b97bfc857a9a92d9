#!/bin/sh
# make check-llamacpp: ftc's GGUF against llama.cpp itself (built by scripts/build-llamacpp.sh).
# Usage: sh scripts/check-llamacpp.sh build/ftc
set -e
FTC=${1:-build/ftc}
LCP=$(sh "$(dirname "$0")/build-llamacpp.sh" --print) || { echo "check-llamacpp: llama.cpp is not built: run make llamacpp" >&2; exit 1; }
SMOL=$(sh "$(dirname "$0")/find-smollm2.sh")
[ -n "$SMOL" ] || { echo "check-llamacpp: SmolLM2 GGUF not installed (scripts/install-deps.sh)" >&2; exit 1; }
echo "== llama.cpp: $(cat "$LCP/STAMP")"
# smoke: llama.cpp loads the SmolLM2 GGUF ftc reads and generates greedily
"$LCP/bin/llama-simple" -m "$SMOL" -n 16 "The capital of France is" 2>/dev/null
echo
