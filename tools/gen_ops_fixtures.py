#!/usr/bin/python3
"""Writes tests/fixtures/ops/*.bin: PyTorch/transformers forward outputs and gradients for ftc's ops
(include/ftc/ops.h), read by tests/test_ops_torch.c. Run with Debian's python3 (torch 1.13,
transformers 4.38.2):  /usr/bin/python3 tools/gen_ops_fixtures.py

File format (little-endian), one file per op case:
  8 bytes magic "FTCOPS1\\n", u32 tensor count, then per tensor:
  u8 name length, name bytes, u8 dtype (0 = f32, 1 = i32, 2 = u8), u8 ndim, u32 dims[ndim], raw data.
Naming: inputs by their ops.h parameter name, "dy" the upstream gradient, "y"/"out" forward output,
"d<name>" a gradient. Scalars are 1-element tensors.
"""
import math
import os
import struct

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN
from transformers.models.llama import modeling_llama as llama

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ops")
DTYPES = {torch.float32: 0, torch.int32: 1, torch.uint8: 2}


def save(name, **tensors):
    os.makedirs(OUT, exist_ok=True)
    blob = bytearray(b"FTCOPS1\n" + struct.pack("<I", len(tensors)))
    for key, t in tensors.items():
        t = torch.as_tensor(t).detach().contiguous()
        if t.dtype == torch.int64:
            t = t.to(torch.int32)
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if t.dtype == torch.float64:
            t = t.to(torch.float32)
        kb = key.encode()
        blob += struct.pack("<B", len(kb)) + kb + struct.pack("<BB", DTYPES[t.dtype], t.dim())
        blob += struct.pack("<%dI" % t.dim(), *t.shape) + t.numpy().tobytes()
    path = os.path.join(OUT, name + ".bin")
    with open(path + ".tmp", "wb") as f:
        f.write(blob)
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(blob)} bytes")


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_()


def embedding():
    N, C, V, P, TT = 10, 16, 7, 12, 2
    wte, wpe, wtt = leaf(V, C), leaf(P, C), leaf(TT, C)
    ids = torch.randint(0, V, (N,))
    pos = torch.randint(0, P, (N,))
    types = torch.randint(0, TT, (N,))
    out = F.embedding(ids, wte) + F.embedding(pos, wpe) + F.embedding(types, wtt)
    dy = torch.randn_like(out)
    out.backward(dy)
    save("embedding", ids=ids, pos=pos, types=types, wte=wte, wpe=wpe, wtt=wtt, dy=dy, out=out,
         dwte=wte.grad, dwpe=wpe.grad, dwtt=wtt.grad)


def layernorm():
    N, C, eps = 6, 64, 1e-12  # BERT's eps; GPT-2's is 1e-5
    x, w, b = leaf(N, C, scale=3.0), leaf(C), leaf(C)
    with torch.no_grad():
        x += 2.0
    y = F.layer_norm(x, (C,), w, b, eps)
    dy = torch.randn_like(y)
    y.backward(dy)
    save("layernorm", x=x, w=w, b=b, eps=torch.tensor([eps]), dy=dy, y=y, dx=x.grad, dw=w.grad, db=b.grad)


def rmsnorm():
    N, C, eps = 6, 64, 1e-6
    norm = llama.LlamaRMSNorm(C, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(C))
    x = leaf(N, C, scale=2.0)
    y = norm(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    save("rmsnorm", x=x, w=norm.weight, eps=torch.tensor([eps]), dy=dy, y=y, dx=x.grad, dw=norm.weight.grad)


def linear():
    N, I, O = 9, 48, 24
    lin = torch.nn.Linear(I, O)
    x = leaf(N, I)
    y = lin(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    save("linear", x=x, W=lin.weight, b=lin.bias, dy=dy, y=y, dx=x.grad, dW=lin.weight.grad, db=lin.bias.grad)


def activations():
    n = 256
    for name, fn in (("gelu_tanh", ACT2FN["gelu_new"]), ("gelu_erf", ACT2FN["gelu"]), ("tanh", torch.tanh)):
        x = leaf(n, scale=3.0)
        y = fn(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        save(name, x=x, dy=dy, y=y, dx=x.grad)
    # GPT-2's config says gelu_new; torch's own tanh GELU must agree with it too
    x = torch.randn(n) * 3
    assert torch.allclose(ACT2FN["gelu_new"](x), F.gelu(x, approximate="tanh"), atol=1e-6)
    gate, up = leaf(n, scale=3.0), leaf(n)
    y = ACT2FN["silu"](gate) * up  # LlamaMLP: act_fn(gate_proj(x)) * up_proj(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    save("swiglu", gate=gate, up=up, dy=dy, y=y, dgate=gate.grad, dup=up.grad)


def llama3_inv_freq(inv_freq, factor, low, high, old_len):
    """Llama-3 rope_scaling as described by transformers' _compute_llama3_parameters (4.43+)."""
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope():
    for name, theta, D, llama3 in (("rope", 10000.0, 16, None), ("rope_llama3", 500000.0, 64, (8.0, 1.0, 4.0, 8192))):
        N, H = 7, 3
        emb = llama.LlamaRotaryEmbedding(D, base=theta)
        inv_freq = emb.inv_freq.clone()
        if llama3:
            inv_freq = llama3_inv_freq(inv_freq, *llama3)
            emb.inv_freq = inv_freq
        pos = torch.tensor([0, 1, 2, 5, 17, 300, 8191])[:N]
        x = leaf(N, H, D)
        xt = x.transpose(0, 1).unsqueeze(0)  # [1, H, N, D] as the Llama attention sees it
        cos, sin = emb(xt, pos[None, :])
        y, _ = llama.apply_rotary_pos_emb(xt, xt, cos, sin)
        y = y.squeeze(0).transpose(0, 1)
        dy = torch.randn_like(y)
        y.backward(dy)
        extra = {}
        if llama3:
            extra = dict(llama3=torch.tensor(llama3[:3] + (float(llama3[3]),)))
        save(name, x=x, pos=pos, theta=torch.tensor([theta]), inv_freq=inv_freq, dy=dy, y=y, dx=x.grad, **extra)


def attention():
    # B, T, H, Hkv, D, causal, padding: GQA causal with left padding (decoder batch), MHA bidirectional with
    # right padding (BERT batch)
    cases = (("attention_gqa_causal", 2, 6, 4, 2, 8, True), ("attention_mha_bidir", 2, 5, 3, 3, 8, False))
    for name, B, T, H, Hkv, D, causal in cases:
        q, k, v = leaf(B, T, H, D), leaf(B, T, Hkv, D), leaf(B, T, Hkv, D)
        mask = torch.ones(B, T, dtype=torch.bool)
        if causal:
            mask[0, :2] = False  # left padding
        else:
            mask[1, -2:] = False  # right padding
        rep = H // Hkv  # transformers' repeat_kv: query head h reads kv head h // rep
        qh = q.transpose(1, 2)
        kh = k.transpose(1, 2).repeat_interleave(rep, dim=1)
        vh = v.transpose(1, 2).repeat_interleave(rep, dim=1)
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(D)
        eye = torch.eye(T, dtype=torch.bool)
        visible = (mask[:, None, None, :] | eye) & (torch.tril(torch.ones(T, T, dtype=torch.bool)) if causal else True)
        att = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        out = (att @ vh).transpose(1, 2).contiguous()
        dy = torch.randn_like(out)
        # padded query rows are never read by a loss: zero their upstream gradient as a model would
        dy = dy * mask[:, :, None, None]
        out.backward(dy)
        save(name, q=q, k=k, v=v, key_mask=mask, causal=torch.tensor([int(causal)], dtype=torch.int32),
             dims=torch.tensor([B, T, H, Hkv, D], dtype=torch.int32), dy=dy, out=out, att=att,
             dq=q.grad, dk=k.grad, dv=v.grad)


def cross_entropy():
    N, V = 8, 50
    logits = leaf(N, V, scale=3.0)
    targets = torch.randint(0, V, (N,))
    targets[2] = -100
    targets[5] = -100
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    dloss = torch.tensor(0.37)
    loss.backward(dloss)
    save("cross_entropy", logits=logits, targets=targets, dloss=dloss.reshape(1), loss=loss.reshape(1),
         dlogits=logits.grad)


def pools():
    B, T, C = 3, 5, 8
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    for name in ("pool_cls", "pool_mean", "pool_last"):
        x = leaf(B, T, C)
        if name == "pool_cls":
            out = x[:, 0]
        elif name == "pool_mean":  # sentence-transformers mean pooling
            m = mask[:, :, None].float()
            out = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        else:
            last = torch.tensor([int(torch.nonzero(row)[-1]) for row in mask])
            out = x[torch.arange(B), last]
        dy = torch.randn_like(out)
        out.backward(dy)
        save(name, x=x, mask=mask, dy=dy, out=out, dx=x.grad)


def adamw():
    # name, lr, beta1, beta2, eps, weight_decay, steps
    for name, lr, b1, b2, eps, wd, steps in (("adamw_default", 1e-3, 0.9, 0.999, 1e-8, 0.01, 6),
                                             ("adamw_odd", 5e-2, 0.8, 0.95, 1e-6, 0.1, 4)):
        n = 33
        w = torch.nn.Parameter(torch.randn(n))
        w0 = w.detach().clone()
        opt = torch.optim.AdamW([w], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
        grads, ws = [], []
        for _ in range(steps):
            g = torch.randn(n) * 0.1
            g[0] = 0.0  # a zero gradient still decays the weight
            w.grad = g.clone()
            opt.step()
            grads.append(g)
            ws.append(w.detach().clone())
        st = opt.state[w]
        save(name, hparams=torch.tensor([lr, b1, b2, eps, wd]), w0=w0, grads=torch.stack(grads), w=torch.stack(ws),
             m=st["exp_avg"], v=st["exp_avg_sq"])


def rdrop():
    """R-Drop's loss (Liang et al. 2021) as the paper writes it per example, CE(p1) + CE(p2) + alpha/2 (KL(p1||p2) +
    KL(p2||p1)), halved (ftc's --rdrop); the KL terms as the R-Drop repository's compute_kl_loss computes them
    (F.kl_div of log_softmax against softmax), averaged over the examples. Rows [0, P) pass 1, [P, 2P) pass 2."""
    torch.manual_seed(14)  # its own seed: the other fixtures keep their bytes
    P, K, alpha = 6, 77, 2.5
    logits = leaf(2 * P, K, scale=2.0)
    targets = torch.randint(0, K, (P,))
    l1, l2 = logits[:P], logits[P:]
    ce = 0.5 * (F.cross_entropy(l1, targets) + F.cross_entropy(l2, targets))
    kl_21 = F.kl_div(F.log_softmax(l1, dim=-1), F.softmax(l2, dim=-1), reduction="none").sum(-1)  # KL(p2 || p1)
    kl_12 = F.kl_div(F.log_softmax(l2, dim=-1), F.softmax(l1, dim=-1), reduction="none").sum(-1)  # KL(p1 || p2)
    sym = (kl_12 + kl_21).mean()
    loss = ce + alpha / 4 * sym
    dloss = torch.tensor(0.61)
    loss.backward(dloss)
    save("rdrop", logits=logits, targets=targets.repeat(2), alpha=torch.tensor([alpha]), dloss=dloss.reshape(1),
         sym_kl=sym.reshape(1), loss=loss.reshape(1), dlogits=logits.grad)


if __name__ == "__main__":
    torch.manual_seed(0)
    embedding()
    layernorm()
    rmsnorm()
    linear()
    activations()
    rope()
    attention()
    cross_entropy()
    pools()
    adamw()
    rdrop()
