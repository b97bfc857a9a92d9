#!/usr/bin/env python3
"""Fixtures for tests/test_quant.c: f32 inputs and the blocks the reference quantizers make of them.

  tests/fixtures/quant/quant.gguf   for each case k of each type T: "T.k.src" (F32, the input) and "T.k"
                                    (type T, the reference's blocks); metadata names the references

References (the oracles ftc's quantizers must match bit for bit):
  Q8_0, Q4_0, Q4_1  gguf.quants.quantize (PyPI gguf, numpy)
  Q4_K              ggml's quantize_row_q4_K_ref: gguf has no Q4_K quantizer, so this script compiles
                    ggml's src/ggml-quants.c from a ggml checkout with gcc (x86-64 baseline: no FMA, as
                    ggml's reference path runs on any CPU) into a small driver and pipes the inputs through

  /usr/bin/python3 -m pip install --break-system-packages gguf numpy
  /usr/bin/python3 tools/gen_quant_fixtures.py --ggml /path/to/ggml   # a clone of ggml-org/ggml
"""
import argparse
import importlib.metadata
import os
import subprocess
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

GGUF_VERSION = importlib.metadata.version("gguf")
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant")
DRIVER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
/* the rest of ggml is not linked: the few symbols ggml-quants.c refers to elsewhere, never reached here */
void ggml_abort(const char *file, int line, const char *fmt, ...) { (void)file; (void)line; (void)fmt; abort(); }
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; abort(); }
const char *ggml_type_name(int type) { (void)type; abort(); }
size_t ggml_type_size(int type) { (void)type; abort(); }
int main(void) {
    size_t cap = 1 << 16, n = 0;
    float *x = malloc(cap * 4);
    size_t got;
    while ((got = fread(x + n, 4, cap - n, stdin)) > 0) { n += got; if (n == cap) x = realloc(x, (cap *= 2) * 4); }
    void *y = malloc(n / 256 * 144 + 1);
    quantize_row_q4_K_ref(x, y, (int64_t)n);
    fwrite(y, 144, n / 256, stdout);
    return 0;
}
"""


def build_q4k_oracle(ggml, tmp):
    drv = os.path.join(tmp, "drv.c")
    with open(drv, "w") as f:
        f.write(DRIVER)
    exe = os.path.join(tmp, "q4k_ref")
    subprocess.run(["gcc", "-O2", "-I", os.path.join(ggml, "include"), "-I", os.path.join(ggml, "src"),
                    os.path.join(ggml, "src", "ggml-quants.c"), drv, "-o", exe, "-lm"], check=True)
    return exe


def cases(rng, block):
    """Inputs [rows, ne0] covering the quantizers' branches."""
    out = []
    out.append(rng.standard_normal((8, 4 * block)).astype(np.float32))                      # gaussian
    out.append((rng.standard_t(3, (32 if block == 32 else 12, 8 * block)) * 0.05).astype(np.float32))  # heavy tails
    out.append((rng.standard_normal((4, 2 * block)) * 0.02).astype(np.float32))             # weight-like scale
    out.append(rng.uniform(-3, 5, (4, 2 * block)).astype(np.float32))                       # skewed uniform
    x = rng.standard_normal((4, 2 * block)).astype(np.float32)
    x[0, :block] = 0                                                                        # all-zero block
    x[1, :block] = 0.75                                                                     # constant block
    x[2, :block] = -np.abs(x[2, :block])                                                    # all negative
    x[3, :block] = np.abs(x[3, :block]) + 1                                                 # all positive, min > 0
    x[0, block:block + 3] = [40.0, -40.0, 1.0]                                              # outliers, tied max
    out.append(x)
    out.append((rng.standard_normal((2, 2 * block)) * 1e-6).astype(np.float32))             # f16-subnormal scales
    out.append((rng.standard_normal((2, 2 * block)) * 3000).astype(np.float32))             # large
    t = rng.integers(-127, 128, (2, 2 * block)).astype(np.float32) / 127 * 2.0              # exact grid (ties)
    t[:, ::block] = 2.0
    out.append(t.astype(np.float32))
    h = (rng.integers(-8, 8, (2, 2 * block)) + 0.5).astype(np.float32)                      # halves
    out.append(h)
    x = rng.standard_normal((2, 2 * block)).astype(np.float32)                              # sparse groups
    x[:, ::3] = 0
    x[0, : block // 2] = 0
    out.append(x)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ggml", required=True, help="a ggml source checkout (for Q4_K's reference)")
    ap.add_argument("--ggml-commit", help="its commit, when the checkout is not a git work tree")
    args = ap.parse_args()
    rng = np.random.default_rng(18)
    os.makedirs(OUT, exist_ok=True)
    commit = args.ggml_commit or subprocess.run(["git", "-C", args.ggml, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    w = gguf.GGUFWriter(os.path.join(OUT, "quant.gguf"), "test")
    w.add_string("ftc.quant.reference", "gguf %s gguf.quants.quantize (Q8_0, Q4_0, Q4_1); ggml %s "
                 "quantize_row_q4_K_ref, gcc x86-64 baseline (Q4_K)" % (GGUF_VERSION, commit or "?"))
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        q4k = build_q4k_oracle(args.ggml, tmp)
        for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K):
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            for k, x in enumerate(cases(rng, block)):
                if qtype == T.Q4_K:
                    raw = subprocess.run([q4k], input=np.ascontiguousarray(x).tobytes(), capture_output=True,
                                         check=True).stdout
                    q = np.frombuffer(raw, dtype=np.uint8).reshape(x.shape[0], x.shape[1] // block * size)
                else:
                    q = quantize(x, qtype)
                name = "%s.%d" % (qtype.name, k)
                w.add_tensor(name + ".src", x)
                w.add_tensor(name, q, raw_dtype=qtype)
                counts[qtype.name] = counts.get(qtype.name, 0) + x.size // block
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("blocks per type:", counts)


if __name__ == "__main__":
    main()
