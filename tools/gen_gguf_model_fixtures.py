#!/usr/bin/env python3
"""GGUF files of the tiny HF fixture models (tests/fixtures/models/{llama_gqa,llama_tied,qwen2,gpt2}),
converted the way llama.cpp's convert_hf_to_gguf.py converts them, written with the PyPI `gguf` writer:

  - tensor names token_embd / blk.N.attn_q ... / output_norm / output (absent when tied)
  - llama: q_proj and k_proj rows permuted (LlamaModel.permute: each head's rows reshaped
    [2, D/2] and swapped into interleaved pairs; k with the KV head count)
  - gpt2: Conv1D weights [in, out] transposed to [out, in]
  - hyperparameters under {arch}.*, a small gpt2-type vocabulary (tokenizer.ggml.*)
  - F32 tensors, so the HF directory ftc writes back must equal the original bit for bit

Writes tests/fixtures/gguf/<name>.gguf. tests/test_gguf_model.c checks ftc_gguf_export_hf against the
original model.safetensors and config.json.

  /usr/bin/python3 tools/gen_gguf_model_fixtures.py
"""
import json
import os
import struct

import numpy as np
import gguf

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").reshape(v["shape"]).copy()
    return out


def permute(w, n_head, n_head_kv):  # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def vocab(n):
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    chars += [str(d) for d in range(10)] + list("!#$%&()*+,-./:;<=>?@")
    toks = ["<|endoftext|>"] + chars[: n - 2] + ["ab"]
    assert len(toks) == n
    types = [3] + [1] * (n - 1)
    return toks, types


def convert(name):
    d = os.path.join(ROOT, "models", name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    t = load_st(os.path.join(d, "model.safetensors"))
    mt = cfg["model_type"]
    w = gguf.GGUFWriter(os.path.join(ROOT, "gguf", name + ".gguf"), mt)
    w.add_name(name)
    if mt == "gpt2":
        C, L, H = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
        w.add_block_count(L)
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(C)
        w.add_feed_forward_length(cfg.get("n_inner") or 4 * C)
        w.add_head_count(H)
        w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
        p = "transformer."
        w.add_tensor("token_embd.weight", t[p + "wte.weight"])
        w.add_tensor("position_embd.weight", t[p + "wpe.weight"])
        for i in range(L):
            for hf, g in [("ln_1", "attn_norm"), ("ln_2", "ffn_norm")]:
                w.add_tensor(f"blk.{i}.{g}.weight", t[f"{p}h.{i}.{hf}.weight"])
                w.add_tensor(f"blk.{i}.{g}.bias", t[f"{p}h.{i}.{hf}.bias"])
            for hf, g in [("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"), ("mlp.c_fc", "ffn_up"),
                          ("mlp.c_proj", "ffn_down")]:
                w.add_tensor(f"blk.{i}.{g}.weight", np.ascontiguousarray(t[f"{p}h.{i}.{hf}.weight"].T))
                w.add_tensor(f"blk.{i}.{g}.bias", t[f"{p}h.{i}.{hf}.bias"])
        w.add_tensor("output_norm.weight", t[p + "ln_f.weight"])
        w.add_tensor("output_norm.bias", t[p + "ln_f.bias"])
        V = cfg["vocab_size"]
    else:
        C, L, H, KV = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        w.add_block_count(L)
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(C)
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(H)
        w.add_head_count_kv(KV)
        w.add_rope_freq_base(cfg["rope_theta"])
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_rope_dimension_count(C // H)
        llama = mt == "llama"
        w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
        for i in range(L):
            p = f"model.layers.{i}."
            w.add_tensor(f"blk.{i}.attn_norm.weight", t[p + "input_layernorm.weight"])
            w.add_tensor(f"blk.{i}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
            for hf, g in [("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")]:
                x = t[p + "self_attn." + hf + ".weight"]
                if llama and hf == "q_proj":
                    x = permute(x, H, H)
                if llama and hf == "k_proj":
                    x = permute(x, H, KV)
                w.add_tensor(f"blk.{i}.{g}.weight", np.ascontiguousarray(x))
                if p + "self_attn." + hf + ".bias" in t:
                    w.add_tensor(f"blk.{i}.{g}.bias", t[p + "self_attn." + hf + ".bias"])
            for hf, g in [("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")]:
                w.add_tensor(f"blk.{i}.{g}.weight", t[p + "mlp." + hf + ".weight"])
        w.add_tensor("output_norm.weight", t["model.norm.weight"])
        if "lm_head.weight" in t:
            w.add_tensor("output.weight", t["lm_head.weight"])
        V = cfg["vocab_size"]
    toks, types = vocab(V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(["a b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(name, os.path.getsize(os.path.join(ROOT, "gguf", name + ".gguf")))


if __name__ == "__main__":
    for n in ["llama_gqa", "llama_tied", "qwen2", "gpt2"]:
        convert(n)
