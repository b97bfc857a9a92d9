#!/usr/bin/env python3
"""PyTorch peer of bench/longseq_bench.sh (issue 22): the same LoRA training step (SmolLM2-135M in Hugging Face
layout, every linear layer, r 8, alpha 16, fp32, batch 1, random token ids) at one sequence length, with and
without gradient checkpointing. transformers' CPU attention on torch 1.13 materialises the T x T probabilities of
every head and keeps them for backward, which is what ftc's tiled attention avoids.

    python3 bench/longseq_torch.py MODEL_DIR T CKPT(0|1) [STEPS]

Prints one JSON line: tokens_per_s (median step after a warm-up), peak_rss_mb (getrusage), step_s.
Benchmark only (Debian python3-torch, transformers 4.38.2, peft 0.10.0); never part of the tests.
"""
import json
import resource
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    model_dir, T, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    if ckpt:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (1, T))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:]) if len(times) > 1 else times[0]
    print(json.dumps({"impl": "pytorch", "T": T, "grad_checkpoint": ckpt, "tokens_per_s": round(T / step, 1),
                      "step_s": round(step, 3), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
