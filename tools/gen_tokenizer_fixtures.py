#!/usr/bin/env python3
"""Fixtures for tests/test_tokenizer_fixtures.c, from Hugging Face `tokenizers` (the reference).

For each tokenizer (../shared/data/tokenizers/*, the MiniLM one, stories260K-hf) and every text of
tests/fixtures/tokenizer_corpus.jsonl, writes one line to tests/fixtures/tok_<name>.jsonl:
  [ids (encode with special tokens, as HF's encode() by default), decode(ids) (skip_special_tokens=True)]
Truncation/padding stored in tokenizer.json are disabled: ftc's API takes max_len explicitly.
Files over 900 kB are split into tok_<name>.N.jsonl.

Usage: python3 tools/gen_tokenizer_fixtures.py   (pip install tokenizers)
"""
import json
import os
import subprocess

import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.path.join(ROOT, "..", "shared", "data")
LIMIT = 900_000


def minilm_dir():
    try:
        return subprocess.run(["sh", os.path.join(ROOT, "scripts/find-minilm.sh")], capture_output=True, text=True,
                              check=True).stdout.strip()
    except subprocess.CalledProcessError:
        return None


def main():
    with open(os.path.join(FIX, "tokenizer_corpus.jsonl"), encoding="utf-8") as f:
        corpus = [json.loads(l) for l in f]
    sources = {n: os.path.join(SHARED, "tokenizers", n) for n in ["gpt2", "bert-base-uncased", "llama2"]}
    sources["stories260K"] = os.path.join(SHARED, "models", "stories260K-hf")
    m = minilm_dir()
    if m:
        sources["minilm"] = m
    for name, d in sources.items():
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        for old in os.listdir(FIX):
            if old.startswith(f"tok_{name}.") and old.endswith(".jsonl"):
                os.remove(os.path.join(FIX, old))
        chunks, cur, size, ntok = [], [], 0, 0
        for text in corpus:
            ids = tok.encode(text).ids
            ntok += len(ids)
            line = json.dumps([ids, tok.decode(ids)], ensure_ascii=False, separators=(",", ":")) + "\n"
            if size + len(line.encode()) > LIMIT and cur:
                chunks.append(cur)
                cur, size = [], 0
            cur.append(line)
            size += len(line.encode())
        chunks.append(cur)
        for i, c in enumerate(chunks):
            with open(os.path.join(FIX, f"tok_{name}.{i}.jsonl"), "w", encoding="utf-8") as f:
                f.writelines(c)
        print(f"{name}: {len(corpus)} lines, {ntok} tokens, {len(chunks)} file(s), tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
