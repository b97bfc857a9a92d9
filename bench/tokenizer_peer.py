#!/usr/bin/env python3
"""HF tokenizers' side of bench/tokenizer_bench.c: same chunks (<= 4 KiB, cut at line ends), single
thread, no special tokens. Prints "<MB/s median> <tokens> <bytes>".
Usage: tokenizer_peer.py --model DIR --text FILE [--reps N]"""
import argparse
import os
import statistics
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--text", required=True)
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()
tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
tok.no_truncation()
tok.no_padding()
data = open(a.text, "rb").read()
chunks, p = [], 0
while p < len(data):
    e = min(p + 4096, len(data))
    if e < len(data):
        k = data.rfind(b"\n", p, e)
        if k >= p:
            e = k + 1
        else:
            while e > p and (data[e] & 0xC0) == 0x80:
                e -= 1
    chunks.append(data[p:e].decode("utf-8"))
    p = e
rates, tokens = [], 0
for _ in range(a.reps):
    t0 = time.perf_counter()
    tokens = 0
    for c in chunks:
        tokens += len(tok.encode(c, add_special_tokens=False).ids)
    rates.append(len(data) / 1e6 / (time.perf_counter() - t0))
print(f"{statistics.median(rates):.2f} {tokens} {len(data)}")
