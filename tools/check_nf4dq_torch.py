#!/usr/bin/env python3
"""ftc's NF4DQ encoding against the real bitsandbytes on weights of real models' sizes (too big for a fixture).

For each shape: a random weight (std 0.02, one with rows scaled over 4 decades), ftc's bytes
(tools/nf4dq_quantize.c, compiled here against build/libftc.a) and bitsandbytes'
quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=True) on torch's CPU, in ftc's layout
(tools/gen_nf4_fixtures.py ftc_layout); prints the blocks, bytes and differing bytes per torch thread count.
Torch splits a sum over more than 32768 values (here: absmax values, weights over 2M values) between its threads, so
with 2 or more threads bitsandbytes' offset (the mean absmax) can change in its last bit and with it some 8-bit
codes; ftc keeps torch's one-thread order (docs/quant.md).

  python3 tools/check_nf4dq_torch.py [--threads 1,2] [--build build]
  (needs torch and bitsandbytes 0.50.2 importable, e.g. PYTHONPATH=DIR_OF_THE_UNZIPPED_WHEEL:...)
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import bitsandbytes.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_nf4_fixtures import ftc_layout  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHAPES = [(512, 2048), (2048, 2048), (2048, 8192), (8192, 2048), (576, 1536), (32000, 2048)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    exe = os.path.join(tmp, "nf4dq_quantize")
    subprocess.check_call(["cc", "-O2", "-std=c11", "-I", os.path.join(ROOT, "include"),
                           os.path.join(ROOT, "tools", "nf4dq_quantize.c"), os.path.join(args.build, "libftc.a"),
                           "-ljansson", "-lopenblas", "-lm", "-lpthread", "-fopenmp", "-o", exe])
    print("torch", torch.__version__, torch.backends.cpu.get_cpu_capability())
    for th in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(th)
        rng = np.random.default_rng(7)
        blocks = nbytes = differ = offsets = 0
        for O, I in SHAPES:
            x = (rng.standard_normal((O, I)) * 0.02).astype(np.float32)
            if O == 576:
                x *= np.exp(rng.uniform(-3, 1, (O, 1))).astype(np.float32)
            src, out = os.path.join(tmp, "x.f32"), os.path.join(tmp, "q.bin")
            x.tofile(src)
            subprocess.check_call([exe, src, str(O), str(I), out])
            got = np.fromfile(out, np.uint8)
            q, st = F.quantize_4bit(torch.from_numpy(x), blocksize=64, compress_statistics=True, quant_type="nf4")
            want = ftc_layout(q.numpy().reshape(-1), st.absmax.numpy(), st.state2.absmax.numpy(),
                              np.float32(st.offset.item()))
            at = want.size - 4 * (st.state2.absmax.numel() + 1)  # the offset's 4 bytes
            d = int((got != want).sum())
            offsets += int(got[at:at + 4].tobytes() != want[at:at + 4].tobytes())
            blocks, nbytes, differ = blocks + O * I // 64, nbytes + got.size, differ + d
            print(f"  torch threads {th}: {O} x {I}: {O * I // 64} blocks, {got.size} bytes, {d} differ")
        print(f"torch threads {th}: {len(SHAPES)} weights, {blocks} blocks, {nbytes} bytes, {differ} differ, "
              f"{offsets} offsets differ")


if __name__ == "__main__":
    main()
