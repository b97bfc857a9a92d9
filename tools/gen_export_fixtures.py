#!/usr/bin/env python3
"""Writes tests/fixtures/export/<model>_{ids,logits}.jsonl from the transformers reference outputs already in
tests/fixtures/models/<model>/reference.safetensors (tools/gen_model_fixtures.py): each batch row without
its padding, and transformers' logits for it, so tests/cli_logits.sh can check `ftc logits` line by line.
Needs only numpy + safetensors (the default python3)."""
import json
import os

from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "export")

os.makedirs(OUT, exist_ok=True)
for name, causal in (("gpt2", True), ("bert_cls", False)):
    ref = load_file(os.path.join(ROOT, "tests", "fixtures", "models", name, "reference.safetensors"))
    with open(os.path.join(OUT, f"{name}_ids.jsonl"), "w") as fi, open(os.path.join(OUT, f"{name}_logits.jsonl"), "w") as fl:
        for row in range(ref["input_ids"].shape[0]):
            n = int(ref["attention_mask"][row].sum())
            line = {"input_ids": ref["input_ids"][row, :n].tolist()}
            if "token_type_ids" in ref:
                line["token_type_ids"] = ref["token_type_ids"][row, :n].tolist()
            fi.write(json.dumps(line) + "\n")
            # causal logits of the real tokens do not depend on the padding after them; BERT's do not either
            # (the mask hides it), so transformers' padded-batch outputs are the unpadded ones
            logits = ref["logits"][row, :n] if causal else ref["logits"][row]
            fl.write(json.dumps([float(f"{v:.8g}") for v in logits.reshape(-1).tolist()]) + "\n")
