#!/usr/bin/python3
"""PyTorch peer for ftc's training benchmark (bench/train_bench.sh): the same model shape, the same batch,
the same work per step (forward + backward + AdamW), timed the same way, so that the two can be compared
as a ratio measured in one run on one machine (see ../shared/docs/BENCHMARKS.md).

Run with Debian's Python (torch 1.13 + transformers 4.38.2):
    /usr/bin/python3 bench/torch_train_peer.py --model DIR --batch 32 --seq 64 --steps 8
DIR is what `ftc init --config bench/configs/NAME.json --out DIR` wrote, so both sides train the same
weights. Without ftc (e.g. to try the peer alone) --config JSON builds the model with transformers' own
random initialisation instead.

What a step is:
  - classification (BertForSequenceClassification): pooled [CLS] -> dropout -> Linear(num_labels),
    cross-entropy against random labels;
  - causal LM (GPT2LMHeadModel, LlamaForCausalLM): labels = input ids (the model shifts), mean loss;
  - the model is in train() mode (dropout as the config says), inputs are random ids, no padding;
  - --method lora: every Linear/Conv1D inside the transformer blocks (attention and MLP) gets
    y += (alpha/r) B(A x), A Kaiming-uniform, B zero (as PEFT; written here in plain torch because PEFT
    is not installed), the base is frozen; the head is frozen too for causal LM;
  - --base-dtype bf16: the base weights and activations are bfloat16 (as from_pretrained(torch_dtype=
    torch.bfloat16) would give), LoRA weights and optimizer state stay fp32;
  - --precision bf16: the forward runs under torch.autocast("cpu", torch.bfloat16) (matmuls in bf16,
    fp32 master weights and optimizer state), PyTorch's counterpart of ftc's --precision bf16;
  - AdamW(lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on weight matrices only).
Timing: wall time of each whole step; tokens/s = B*T / step time; the figure is the median over steps
3..N (the first two warm up allocators and caches). Peak RSS is the process's ru_maxrss.

Prints one JSON object on stdout; progress goes to stderr.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
from torch import nn


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF model directory (config.json + model.safetensors), e.g. from ftc init")
    src.add_argument("--config", help="config.json: build a randomly initialised model with transformers")
    p.add_argument("--task", choices=["classify", "causal-lm"], default=None,
                   help="default: from the config's architectures (…ForSequenceClassification -> classify)")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--steps", type=int, default=8, help="steps to run; the median is over steps 3..N")
    p.add_argument("--method", choices=["full", "lora"], default="full")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=None, help="default 2*r")
    p.add_argument("--base-dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--lr", type=float, default=1e-4)
    args = p.parse_args()
    if args.steps < 3:
        p.error("--steps must be at least 3 (steps 1-2 are warm-up)")
    if args.lora_alpha is None:
        args.lora_alpha = 2.0 * args.lora_r
    return args


class LoRA(nn.Module):
    """base(x) + (alpha/r) * B(A(x)); base is nn.Linear ([out,in] weight) or GPT-2's Conv1D ([in,out])."""

    def __init__(self, base, r, alpha):
        super().__init__()
        w = base.weight
        if isinstance(base, nn.Linear):
            in_f, out_f = w.shape[1], w.shape[0]
        else:  # transformers.pytorch_utils.Conv1D
            in_f, out_f = w.shape[0], w.shape[1]
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(r, in_f, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(out_f, r, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / r

    def forward(self, x):
        y = self.base(x)
        z = nn.functional.linear(nn.functional.linear(x.to(self.lora_A.dtype), self.lora_A), self.lora_B)
        return y + (z * self.scale).to(y.dtype)


def add_lora(model, r, alpha):
    from transformers.pytorch_utils import Conv1D
    # Linears inside the transformer blocks only: attention and MLP, not embeddings, heads or pooler.
    block_markers = (".h.", ".layers.", ".layer.")
    targets = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D)) and any(m in "." + name + "." for m in block_markers):
            targets.append(name)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LoRA(getattr(parent, child), r, alpha))
    return targets


def flops_per_token(model, cfg, task, seq):
    """BENCHMARKS.md: 6 x (non-embedding params that get gradients, plus the LM head) + 4 x frozen ones
    + 12 x layers x T x C for attention. The LM head counts once even when tied to the embedding."""
    emb_ids = set()
    for mod in model.modules():
        if isinstance(mod, nn.Embedding):
            emb_ids.add(id(mod.weight))
    total = 0
    for _, p in model.named_parameters():
        if id(p) in emb_ids:
            continue
        total += (6 if p.requires_grad else 4) * p.numel()
    if task == "causal-lm":
        head = model.get_output_embeddings().weight
        if id(head) in emb_ids:  # tied: the embedding was skipped above, the head matmul still runs
            total += (6 if head.requires_grad else 4) * head.numel()
    layers = cfg.num_hidden_layers
    hidden = cfg.hidden_size
    return total + 12 * layers * seq * hidden


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
    transformers.logging.set_verbosity_error()

    cfg = AutoConfig.from_pretrained(args.model or args.config)
    task = args.task
    if task is None:
        arch = (cfg.architectures or [""])[0]
        task = "classify" if arch.endswith("ForSequenceClassification") else "causal-lm"
    cls = AutoModelForSequenceClassification if task == "classify" else AutoModelForCausalLM
    dtype = torch.bfloat16 if args.base_dtype == "bf16" else torch.float32
    torch.manual_seed(args.seed)
    t_load = time.time()
    if args.model:
        model = cls.from_pretrained(args.model, torch_dtype=dtype)
    else:
        model = cls.from_config(cfg, torch_dtype=dtype)
    load_s = time.time() - t_load

    if args.method == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        targets = add_lora(model, args.lora_r, args.lora_alpha)
        if task == "classify":  # the new head is trained along with the adapters
            for p in model.classifier.parameters():
                p.requires_grad_(True)
    else:
        targets = []
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay = [p for _, p in trainable if p.dim() >= 2 and id(p) not in emb_ids]
    no_decay = [p for _, p in trainable if not (p.dim() >= 2 and id(p) not in emb_ids)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

    g = torch.Generator().manual_seed(args.seed)
    B, T = args.batch, args.seq
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    if task == "classify":
        labels = torch.randint(0, cfg.num_labels, (B,), generator=g)
        inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=labels)
    else:
        inputs = dict(input_ids=ids, attention_mask=mask, labels=ids)

    step_s, losses = [], []
    for step in range(args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        step_s.append(dt)
        losses.append(float(loss))
        print(f"peer step {step + 1}/{args.steps}: {dt:.3f} s, loss {losses[-1]:.4f}, {B * T / dt:.1f} tok/s",
              file=sys.stderr)

    timed = step_s[2:]
    med = statistics.median(timed)
    out = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "model": args.model or args.config,
        "model_type": cfg.model_type,
        "task": task,
        "method": args.method,
        "base_dtype": args.base_dtype,
        "precision": args.precision,
        "lora_r": args.lora_r if args.method == "lora" else 0,
        "lora_modules": len(targets),
        "batch": B,
        "seq": T,
        "steps": args.steps,
        "tokens_per_s": B * T / med,
        "step_s_median": med,
        "step_s": [round(s, 4) for s in step_s],
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for _, p in trainable),
        "flops_per_token": flops_per_token(model, cfg, task, T),
        "load_s": load_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
