"""ftc's logits against transformers' on a Hugging Face directory (e.g. `ftc export --model X.gguf --format hf`).
Usage: /usr/bin/python3 tools/check_hf_export_logits.py HF_DIR FTC_BIN   (writes ids.jsonl in the current directory)
Needs Debian's python3-torch and transformers 4.38.2 (docs/DEVELOPING.md); a developer check, not run by CI."""
import json, sys, numpy as np
import transformers.utils.import_utils as iu
iu._accelerate_available = False  # a newer accelerate than torch 1.13 supports breaks the import
import torch
from transformers import AutoTokenizer, AutoModelForCausalLM
d = sys.argv[1]
tok = AutoTokenizer.from_pretrained(d)
prompts = ["The capital of France is", "<|im_start|>user\nHow do I unlock a bike?<|im_end|>\n<|im_start|>assistant\n"]
with open("ids.jsonl", "w") as f:
    for p in prompts: f.write(json.dumps({"input_ids": tok(p)["input_ids"]}) + "\n")
m = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32); m.eval()
import subprocess
out = subprocess.run([sys.argv[2], "logits", "--model", d, "--ids", "ids.jsonl"], capture_output=True, text=True, check=True).stdout.splitlines()
for p, line in zip(prompts, out):
    ids = tok(p)["input_ids"]
    with torch.no_grad(): ref = m(torch.tensor([ids])).logits[0].numpy()
    got = np.array(json.loads(line), dtype=np.float32).reshape(ref.shape)
    diff = np.abs(got - ref).max()
    print(f"{type(m).__name__}: {len(ids)} tokens: max |ftc - transformers| {diff:.3g}, max |logit| {np.abs(ref).max():.3g}, rel {diff/np.abs(ref).max():.3g}, argmax equal {bool((got.argmax(-1)==ref.argmax(-1)).all())}")
