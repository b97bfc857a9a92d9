#!/usr/bin/env python3
"""The PyTorch peer of `ftc train --base-dtype q8_0|q4_0` (issue 18; a benchmark, never run by CI): LoRA on a frozen
base whose linear weights are kept packed and dequantized to f32 inside every forward and backward call.

What ftc keeps packed, packed the same way here: every linear of the blocks in the base type, the tied LM head /
token table in Q8_0 (docs/quant.md "The LM head of a quantized base"); norms stay f32. The blocks are ggml's,
quantized by the PyPI `gguf` package's reference quantizer (`gguf.quants.quantize`, which ftc's quantizers match
bit for bit), so both sides train on the same base values. Per block of 32 values:
  q8_0: 32 int8 + one f16 scale d, value d * q            (int8 tensor [O, I/32, 32] + f16 [O, I/32, 1])
  q4_0: 16 bytes of nibbles + one f16 scale d, value d * (q - 8); byte j holds value j (low nibble) and j + 16
        (high nibble)                                      (uint8 [O, I/32, 16] + f16 [O, I/32, 1])
Each product dequantizes the whole weight to f32 (F.linear on it) and frees it; the backward dequantizes again
for the input gradient (as bitsandbytes' MatMul4Bit does), so no dequantized weight outlives its call and there
is no weight gradient. The embedding lookup dequantizes the rows it reads. LoRA (r, alpha, no dropout, A
Kaiming-uniform and B zero as PEFT initialises them) on every linear of the blocks, in f32.

Same model, data, token ids and labels, optimizer, schedule and batches as bench/peft_assistant.py (whose helpers
this imports). Prints one JSON line: tokens/s over the training steps (real tokens), the held-out loss of the
packed base before and after, the bytes the packed weights take, and three peak RSS figures (VmHWM): up to the
training (transformers' f32 load, packing, the base's held-out loss), the training steps alone (the peak reset
before them), and the whole process.

  ftc export --model X.gguf --format hf --out /tmp/smollm2-hf      # once
  /usr/bin/python3 bench/quant_torch_peer.py --base-dtype q8_0 --ftc build/ftc --gguf X.gguf --hf /tmp/smollm2-hf \\
      --train examples/assistant/train.jsonl --test examples/assistant/val.jsonl --lr 3e-3 --max-steps 20

Stack: Debian python3-torch 1.13, transformers 4.38.2, gguf (PyPI).
"""
import argparse
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peft_assistant as pa  # noqa: E402

BLOCK_BYTES = {"q8_0": 34, "q4_0": 18}


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss():
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Packed:
    """One weight [O, I] in ggml blocks of 32: scales d (f16 [O, nb, 1]) and codes (int8 or nibble bytes)."""

    def __init__(self, w, qtype):
        import gguf
        import numpy as np
        import torch
        o, i = w.shape
        nb = i // 32
        t = getattr(gguf.GGMLQuantizationType, qtype.upper())
        raw = gguf.quants.quantize(w.detach().float().numpy(), t)
        blocks = torch.from_numpy(np.ascontiguousarray(raw)).view(o, nb, BLOCK_BYTES[qtype])
        self.qtype, self.shape = qtype, (o, i)
        self.d = blocks[..., :2].contiguous().view(torch.float16)
        codes = blocks[..., 2:].contiguous()
        self.q = codes.view(torch.int8) if qtype == "q8_0" else codes

    def nbytes(self):
        return self.d.numel() * 2 + self.q.numel()

    def rows(self, idx):
        """Dequantized rows idx (any shape of indices) -> f32 [..., I]."""
        return self._deq(self.q[idx], self.d[idx]).reshape(*idx.shape, self.shape[1])

    def dequant(self):
        return self._deq(self.q, self.d).view(self.shape)

    def _deq(self, q, d):
        import torch
        if self.qtype == "q4_0":
            q = torch.cat((q & 15, q >> 4), dim=-1).to(torch.float32) - 8
        return q.to(torch.float32) * d.to(torch.float32)


def deq_matmul():
    import torch

    class DeqMatmul(torch.autograd.Function):
        """y = x W^T with W dequantized for the call; the backward dequantizes it again for dX = dY W."""

        @staticmethod
        def forward(ctx, x, packed):
            ctx.packed = packed
            return torch.nn.functional.linear(x, packed.dequant())

        @staticmethod
        def backward(ctx, gy):
            if not ctx.needs_input_grad[0]:
                return None, None
            return gy.matmul(ctx.packed.dequant()), None

    return DeqMatmul.apply


def build_modules(r, alpha):
    import math
    import torch
    apply = deq_matmul()

    class QLinear(torch.nn.Module):
        """A frozen packed linear (no bias: Llama's have none), with LoRA when r > 0."""

        def __init__(self, packed, r=0, alpha=1.0):
            super().__init__()
            self.packed, self.scale = packed, alpha / r if r else 0.0
            o, i = packed.shape
            if r:
                self.lora_A = torch.nn.Parameter(torch.empty(r, i))
                self.lora_B = torch.nn.Parameter(torch.zeros(o, r))
                torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's init of A

        def forward(self, x):
            y = apply(x, self.packed)
            if self.scale:
                y = y + torch.nn.functional.linear(torch.nn.functional.linear(x, self.lora_A), self.lora_B) * self.scale
            return y

    class QEmbedding(torch.nn.Module):
        def __init__(self, packed):
            super().__init__()
            self.packed = packed

        def forward(self, ids):
            return self.packed.rows(ids)

    return QLinear, QEmbedding


def pack_model(model, qtype, r, alpha):
    """Replaces the blocks' linears (LoRA on each), the LM head and a tied token table by packed modules; frees
    their f32 weights. Returns (trainable parameters, bytes of the packed weights)."""
    QLinear, QEmbedding = build_modules(r, alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    nbytes = 0
    for layer in model.model.layers:
        for parent, names in ((layer.self_attn, pa.TARGETS[:4]), (layer.mlp, pa.TARGETS[4:])):
            for n in names:
                lin = getattr(parent, n)
                assert lin.bias is None
                packed = Packed(lin.weight, qtype)
                nbytes += packed.nbytes()
                setattr(parent, n, QLinear(packed, r, alpha))
    head = Packed(model.lm_head.weight, "q8_0")  # the LM head in Q8_0 whatever the base type, as ftc
    nbytes += head.nbytes()
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.lm_head = QLinear(head)
    if tied:
        model.model.embed_tokens = QEmbedding(head)
    gc.collect()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, nbytes, tied


def main():
    ap = argparse.ArgumentParser()
    pa.add_args(ap)
    ap.add_argument("--base-dtype", choices=sorted(BLOCK_BYTES), required=True)
    a = ap.parse_args()

    import torch
    import transformers
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train = pa.encode(a.ftc, a.gguf, a.train)
    test = pa.encode(a.ftc, a.gguf, a.test)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.hf, torch_dtype=torch.float32)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    torch.manual_seed(a.seed)
    trainable, nbytes, tied = pack_model(model, a.base_dtype, a.r, a.alpha)
    base_loss = pa.heldout_loss(model, test, pad)
    load_peak = peak_rss_mb()  # the f32 load, packing and the held-out loss of the base
    reset = reset_peak_rss()
    step, tokens, wall, losses = pa.train_loop(model, train, a, pad)
    train_peak = peak_rss_mb() if reset else float("nan")
    loss = pa.heldout_loss(model, test, pad)
    print(json.dumps({"framework": "pytorch %s + transformers %s, dequantize-per-call %s base" % (
                          torch.__version__, transformers.__version__, a.base_dtype),
                      "threads": a.threads, "steps": step, "tokens": tokens, "train_seconds": round(wall, 1),
                      "tokens_per_s": round(tokens / wall, 1), "trainable_params": trainable,
                      "packed_weight_mb": round(nbytes / 2**20, 1), "tied_head": tied,
                      "last_train_loss": round(losses[-1], 4), "heldout_loss_base": round(base_loss, 4),
                      "heldout_loss": round(loss, 4), "peak_rss_mb_load": round(load_peak),
                      "peak_rss_mb_train": round(train_peak), "peak_rss_mb": round(max(load_peak, peak_rss_mb()))}))


if __name__ == "__main__":
    main()
