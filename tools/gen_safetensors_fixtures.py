#!/usr/bin/env python3
"""Reference values for tests/test_safetensors.c, read with the Python `safetensors` package (numpy):
for a few tensors of the shared stories260K-hf checkpoint, the shape, the first 8 values and the sum
(float64). ftc's reader must give the same.
Run: python3 tools/gen_safetensors_fixtures.py [SHARED_DATA]  (default ../shared/data)"""
import json, os, sys
import numpy as np
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "shared", "data")
path = os.path.join(shared, "models", "stories260K-hf", "model.safetensors")
t = load_file(path)
names = ["model.embed_tokens.weight", "model.layers.0.self_attn.k_proj.weight", "model.norm.weight"]
out = {"file": "models/stories260K-hf/model.safetensors", "n_tensors": len(t),
       "n_params": int(sum(v.size for v in t.values())), "tensors": []}
for n in names:
    v = t[n]
    out["tensors"].append({"name": n, "dtype": str(v.dtype), "shape": list(v.shape),
                           "first": [float(x) for x in v.reshape(-1)[:8]], "sum": float(v.astype(np.float64).sum())})
dst = os.path.join(root, "tests", "fixtures", "safetensors", "stories260k_ref.json")
with open(dst, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", dst)
