#!/usr/bin/python3
"""Greedy generation references for tests/test_generate.c: transformers' generate() output token ids.

Run with /usr/bin/python3 (torch 1.13 + transformers 4.38.2). For each model (the tiny random fixtures of
tools/gen_model_fixtures.py and the real stories260K) and prompt (token ids, so no tokenizer is involved) it writes
tests/fixtures/generate/<name>.json:
  {"model": path relative to the repo (or "$FTC_SHARED_DATA/..."), "prompt": [ids], "max_new_tokens": N,
   "eos_token_id": id, "output": [generated ids, as generate() returns them after the prompt (EOS included when it
   stopped there)], "min_margin": smallest gap between the best and second-best logit over the steps}
tests/fixtures/generate/stories260k_text.json: the same from a text prompt through the model's own tokenizer:
  {"prompt": text, "max_new_tokens": N, "text": the generated text as `ftc generate` prints it, i.e.
   decode(prompt + generated)[len(decode(prompt)):] with special tokens skipped}
min_margin tells how far float rounding is from flipping a greedy choice (ours and torch's logits differ ~1e-6).
"""
import json, os, sys
import torch
import transformers as tf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "generate")
SHARED = os.environ.get("FTC_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))

CASES = [
    # name, model dir (repo-relative or $FTC_SHARED_DATA/...), prompt ids, max_new_tokens
    ("gpt2", "tests/fixtures/models/gpt2", [5, 17, 3, 42], 12),        # fills the 16-position context
    ("llama_gqa", "tests/fixtures/models/llama_gqa", [1, 20, 33], 20),
    ("llama_tied", "tests/fixtures/models/llama_tied", [1, 9], 20),
    ("qwen2", "tests/fixtures/models/qwen2", [3, 4, 5, 6, 7], 16),
    ("stories260k", "$FTC_SHARED_DATA/models/stories260K-hf", [1, 403, 407, 261, 378], 60),
]


def resolve(path):
    return path.replace("$FTC_SHARED_DATA", SHARED) if path.startswith("$") else os.path.join(ROOT, path)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, rel, prompt, n in CASES:
        model = tf.AutoModelForCausalLM.from_pretrained(resolve(rel), torch_dtype=torch.float32)
        model.eval()
        ids = torch.tensor([prompt])
        eos = model.generation_config.eos_token_id
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                                 num_beams=1, output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=eos if eos is not None else 0)
        gen = out.sequences[0, len(prompt):].tolist()
        margin = min(float(torch.topk(s[0], 2).values[0] - torch.topk(s[0], 2).values[1]) for s in out.scores)
        rec = {"model": rel, "prompt": prompt, "max_new_tokens": n, "eos_token_id": eos, "output": gen,
               "min_margin": margin}
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(rec, f)
            f.write("\n")
        print(f"{name}: {len(gen)} tokens, min margin {margin:.3g}, ends with eos: {bool(gen) and gen[-1] == eos}")
    # text in, text out (tests/cli_generate.sh)
    d = resolve("$FTC_SHARED_DATA/models/stories260K-hf")
    tok = tf.AutoTokenizer.from_pretrained(d)
    model = tf.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
    text_cases = []
    for prompt, n in [("Once upon a time", 40), ("The cat sat on the mat. The dog", 50)]:
        ids = tok(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                                 pad_token_id=model.generation_config.eos_token_id)
        head = tok.decode(out[0, :ids.shape[1]], skip_special_tokens=True)
        full = tok.decode(out[0], skip_special_tokens=True)
        assert full.startswith(head)
        text_cases.append({"prompt": prompt, "max_new_tokens": n, "text": full[len(head):]})
    with open(os.path.join(OUT, "stories260k_text.json"), "w") as f:
        json.dump(text_cases, f, ensure_ascii=False)
        f.write("\n")
    print(f"stories260k_text: {len(text_cases)} text prompts")


if __name__ == "__main__":
    main()
