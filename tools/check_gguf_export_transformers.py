#!/usr/bin/env python3
"""Developer check (not CI): a GGUF exported by ftc as a Hugging Face directory loads in transformers and gives
ftc's logits. Usage: ftc export --model X.gguf --format hf --out /tmp/smol_hf
                     /usr/bin/python3 tools/check_gguf_export_transformers.py build/ftc /tmp/smol_hf
Needs Debian's python3-torch and transformers 4.38.2 (docs/DEVELOPING.md)."""
import json, sys, subprocess, numpy as np, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[2]
tok = AutoTokenizer.from_pretrained(d)
model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
prompts = ["The capital of France is", "def fibonacci(n):\n    ", "In 1969, 3 astronauts flew 384400 km to"]
ids = [tok(p)["input_ids"] for p in prompts]
with open("/tmp/hf_ids.jsonl", "w") as f:
    for i in ids: f.write(json.dumps({"input_ids": i}) + "\n")
out = subprocess.run([sys.argv[1], "logits", "--model", sys.argv[2], "--ids", "/tmp/hf_ids.jsonl"], capture_output=True, text=True, check=True).stdout.splitlines()
print("transformers", __import__("transformers").__version__, "torch", torch.__version__)
for p, i, line in zip(prompts, ids, out):
    ftc = np.array(json.loads(line), dtype=np.float64)
    with torch.no_grad(): hf = np.array(model(torch.tensor([i])).logits[0].double().tolist())
    d_ = np.abs(ftc - hf).max(); rel = d_ / np.abs(hf).max()
    print(f"{p!r:45} T={len(i):2d} max|diff| {d_:.3g} rel {rel:.2g} argmax equal {np.array_equal(ftc.argmax(-1), hf.argmax(-1))}")
msgs=[{"role":"user","content":"What is the capital of France?"}]
enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
g = model.generate(enc, max_new_tokens=12, do_sample=False)
print("transformers greedy chat:", repr(tok.decode(g[0][enc.shape[1]:], skip_special_tokens=False)))
