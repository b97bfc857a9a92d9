#!/usr/bin/env python3
"""The PyTorch + PEFT peer of examples/assistant's LoRA run (a benchmark: never run by CI).

Same model (SmolLM2-135M-Instruct: `ftc export --model X.gguf --format hf --out DIR`), same data, same tokens and
answer-only labels (taken from `ftc template render --tokens`, so both sides train on identical ids and masks),
same LoRA (r, alpha, every linear layer), lr, warmup + linear decay, AdamW (weight decay 0.01, not on the
adapters' biases: they have none), gradient clipping 1.0, batch, epochs. Batches pad to their longest example
as ftc does. Prints tokens/s (the batches' real tokens, padding not counted, as ftc's tok_s), wall time
and the held-out loss (mean NLL over the answer tokens of test.jsonl, as `ftc eval`) as one JSON line.

  /usr/bin/python3 bench/peft_assistant.py --ftc build/ftc --gguf X.gguf --hf /tmp/smollm2-hf \
      --train examples/assistant/train.jsonl --test examples/assistant/test.jsonl [--epochs 3] [--max-steps N]

Stack: Debian python3-torch 1.13, transformers 4.38.2, peft 0.10.0 (+ accelerate 0.27.2, --no-deps).
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time


def encode(ftc, gguf, path):
    """[(ids, labels)] of each conversation, as ftc train builds them (trained tokens keep their id, others -100)."""
    from concurrent.futures import ThreadPoolExecutor
    with open(path, encoding="utf-8") as f:
        lines = [l for l in f if l.strip()]
    with tempfile.TemporaryDirectory() as d:
        def one(k):
            p = os.path.join(d, "m%d.json" % k)
            with open(p, "w", encoding="utf-8") as g:
                g.write(lines[k])
            toks = subprocess.run([ftc, "template", "render", "--model", gguf, "--messages", p, "--tokens"],
                                  check=True, capture_output=True, text=True).stdout
            ids, flags = [], []
            for row in toks.splitlines():
                cols = row.split("\t")
                ids.append(int(cols[1]))
                flags.append(cols[2] == "T")
            return ids, [i if t else -100 for i, t in zip(ids, flags)]
        with ThreadPoolExecutor(8) as ex:
            return list(ex.map(one, range(len(lines))))


def batches(data, bs, pad):
    import torch
    for k in range(0, len(data), bs):
        chunk = data[k:k + bs]
        T = max(len(x[0]) for x in chunk)
        ids = torch.full((len(chunk), T), pad, dtype=torch.long)
        lab = torch.full((len(chunk), T), -100, dtype=torch.long)
        att = torch.zeros((len(chunk), T), dtype=torch.long)
        for i, (a, b) in enumerate(chunk):
            ids[i, :len(a)] = torch.tensor(a)
            lab[i, :len(b)] = torch.tensor(b)
            att[i, :len(a)] = 1
        yield ids, lab, att


def heldout_loss(model, data, pad):
    import torch
    nll, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for ids, lab, att in batches(data, 4, pad):
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
            tgt = lab[:, 1:]
            lp = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                   ignore_index=-100, reduction="sum")
            nll += lp.item()
            n += (tgt != -100).sum().item()
    model.train()
    return nll / n


def add_args(ap):
    """The options this script and bench/quant_torch_peer.py share."""
    ap.add_argument("--ftc", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)


TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_loop(model, train, a, pad):
    """AdamW (weight decay 0.01) on the trainable parameters, warmup + linear decay, clip 1.0, length-grouped
    batches in a seeded order. Returns (steps, real tokens, wall seconds, batch losses)."""
    import torch
    import transformers
    params = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(train) / a.batch)
    total = a.max_steps or steps_per_epoch * a.epochs
    warm = int(a.warmup * total) if a.warmup < 1 else int(a.warmup)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    sched = transformers.get_linear_schedule_with_warmup(opt, warm, total)
    rng = random.Random(a.seed)
    step, tokens, losses = 0, 0, []
    t0 = time.time()
    model.train()
    while step < total:
        order = list(range(len(train)))
        rng.shuffle(order)
        # ftc batches neighbours by length: sort each epoch's shuffled examples into length-ordered batches
        data = sorted((train[i] for i in order), key=lambda x: len(x[0]))
        bl = list(batches(data, a.batch, pad))
        rng.shuffle(bl)
        for ids, lab, att in bl:
            if step >= total:
                break
            out = model(input_ids=ids, attention_mask=att, labels=lab)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            tokens += int(att.sum().item())  # real tokens, padding not counted (as ftc's tok_s)
            step += 1
            losses.append(out.loss.item())
            if step % 10 == 0:
                print("step %d loss %.4f tok/s %.1f" % (step, out.loss.item(), tokens / (time.time() - t0)),
                      file=sys.stderr, flush=True)
    return step, tokens, time.time() - t0, losses


def main():
    ap = argparse.ArgumentParser()
    add_args(ap)
    a = ap.parse_args()

    import torch
    import transformers
    import peft
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train = encode(a.ftc, a.gguf, a.train)
    test = encode(a.ftc, a.gguf, a.test)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.hf, torch_dtype=torch.float32)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    base_loss = heldout_loss(model, test, pad)
    model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    step, tokens, wall, losses = train_loop(model, train, a, pad)
    loss = heldout_loss(model, test, pad)
    print(json.dumps({"framework": "pytorch %s + transformers %s + peft %s" % (torch.__version__,
                      transformers.__version__, peft.__version__), "threads": a.threads, "steps": step,
                      "tokens": tokens, "train_seconds": round(wall, 1), "tokens_per_s": round(tokens / wall, 1),
                      "trainable_params": trainable, "last_train_loss": round(losses[-1], 4),
                      "heldout_loss_base": round(base_loss, 4), "heldout_loss": round(loss, 4)}))


if __name__ == "__main__":
    main()
