#!/usr/bin/python3
"""Reference forward/backward values for the transformer (tests/test_model_fixtures.c).

Run with /usr/bin/python3 (torch 1.13 + transformers 4.38.2). For each tiny random config it writes
  tests/fixtures/models/<name>/config.json + model.safetensors   (HF save_pretrained layout)
  tests/fixtures/models/<name>/reference.safetensors             (inputs and expected outputs)
reference.safetensors holds: input_ids, attention_mask, labels (I32; LM labels in HF convention with -100),
token_type_ids (BERT), logits, hidden (last hidden state after the final norm), loss [1], and
grad.<HF parameter name> for every parameter (HF shapes, i.e. GPT-2 Conv1D grads are [in, out]).
Dropout is 0 everywhere (eval semantics) but gradients are computed.

Real weights (tests/fixtures/models/minilm_ref.safetensors, stories260k_ref.safetensors): token ids made
with the models' own tokenizers (so the C test does not depend on ours) and transformers' outputs.
"""
import os, sys, json, math
import torch
import transformers as tf
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
torch.manual_seed(0)
B, T = 3, 8
LENGTHS = [8, 5, 3]  # right padding: sequence b is real for t < LENGTHS[b]


def inputs(vocab, pad_id=0):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        ids[b, n:] = pad_id
    return ids, mask


def save_case(name, model, ids, mask, labels, types=None, extra_state=None, forward=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.eval()
    model.zero_grad()
    if forward is None:
        kw = dict(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        if types is not None:
            kw["token_type_ids"] = types
        out = model(**kw)
        loss, logits, hidden = out.loss, out.logits, out.hidden_states[-1]
    else:
        loss, logits, hidden = forward()
    loss.backward()
    ref = {"input_ids": ids.int(), "attention_mask": mask.int(), "labels": labels.int(),
           "logits": logits.detach().float().contiguous(), "hidden": hidden.detach().float().contiguous(),
           "loss": loss.detach().float().reshape(1)}
    if types is not None:
        ref["token_type_ids"] = types.int()
    for n, p in model.named_parameters():
        if p.grad is not None:
            ref["grad." + n] = p.grad.detach().float().contiguous()
    if extra_state is None:
        model.save_pretrained(d, safe_serialization=True)
    else:  # own model around a transformers base: write config + state dict ourselves
        extra_state[0].save_pretrained(d)
        save_file({k: v.detach().contiguous() for k, v in extra_state[1].items()}, os.path.join(d, "model.safetensors"),
                  metadata={"format": "pt"})
    save_file(ref, os.path.join(d, "reference.safetensors"))
    print(f"{name}: loss {loss.item():.6f}, {sum(1 for k in ref if k.startswith('grad.'))} grads")


def lm_labels(ids, mask):
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[0, 1] = -100  # a "prompt" token that must not be trained
    return labels


def gpt2(cls=None):
    cfg = tf.GPT2Config(vocab_size=67, n_positions=16, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, layer_norm_epsilon=1e-5,
                        pad_token_id=0)
    ids, mask = inputs(cfg.vocab_size)
    if cls:  # score.weight on the last non-pad token (found through pad_token_id, as transformers does)
        cfg.num_labels = cls
        m = tf.GPT2ForSequenceClassification(cfg)
        with torch.no_grad():
            m.score.weight.normal_(0, 0.5)
        save_case("gpt2_cls", m, ids, mask, torch.tensor([1, 0, 3]))
        return
    m = tf.GPT2LMHeadModel(cfg)
    save_case("gpt2", m, ids, mask, lm_labels(ids, mask))


def llama(name, tie, kv, theta, cls=None, qwen=False, mistral=False):
    kw = dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=kv, max_position_embeddings=32, rms_norm_eps=1e-6, rope_theta=theta,
              tie_word_embeddings=tie, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg = tf.Qwen2Config(**kw) if qwen else tf.MistralConfig(sliding_window=16, **kw) if mistral else tf.LlamaConfig(**kw)
    ids, mask = inputs(cfg.vocab_size)
    if cls:
        cfg.num_labels = cls
        m = tf.LlamaForSequenceClassification(cfg)
        with torch.no_grad():
            m.score.weight.normal_(0, 0.5)  # make the head's contribution visible
        labels = torch.tensor([0, 2, 1])
    else:
        m = (tf.Qwen2ForCausalLM if qwen else tf.MistralForCausalLM if mistral else tf.LlamaForCausalLM)(cfg)
        labels = lm_labels(ids, mask)
    if qwen:
        with torch.no_grad():  # transformers inits biases to 0; random biases test them
            for n, p in m.named_parameters():
                if n.endswith("bias"):
                    p.normal_(0, 0.1)
    save_case(name, m, ids, mask, labels)


def bert_config():
    return tf.BertConfig(vocab_size=71, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=40, max_position_embeddings=16, type_vocab_size=2,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
                         pad_token_id=0, num_labels=3)


def bert_types():
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 3:] = 1
    return types


def randomize_norms(m):
    with torch.no_grad():  # transformers inits LayerNorm to (1, 0); random values test their grads better
        for n, p in m.named_parameters():
            if "LayerNorm" in n or "ln_" in n or "bias" in n:
                p.add_(torch.randn_like(p) * 0.1)


def bert_cls():
    cfg = bert_config()
    m = tf.BertForSequenceClassification(cfg)
    randomize_norms(m)
    ids, mask = inputs(cfg.vocab_size)
    save_case("bert_cls", m, ids, mask, torch.tensor([2, 0, 1]), types=bert_types())


class BertMean(torch.nn.Module):
    """BertModel without pooler + mean over non-pad tokens + Linear: our own pooled head in torch."""

    def __init__(self, cfg):
        super().__init__()
        self.bert = tf.BertModel(cfg, add_pooling_layer=False)
        self.classifier = torch.nn.Linear(cfg.hidden_size, cfg.num_labels)


def bert_mean():
    cfg = bert_config()
    m = BertMean(cfg)
    randomize_norms(m)
    ids, mask = inputs(cfg.vocab_size)
    types = bert_types()
    labels = torch.tensor([1, 1, 2])

    def fwd():
        h = m.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mf = mask.unsqueeze(-1).float()
        pooled = (h * mf).sum(1) / mf.sum(1)
        logits = m.classifier(pooled)
        return torch.nn.functional.cross_entropy(logits, labels), logits, h

    state = dict(m.state_dict())
    save_case("bert_mean", m, ids, mask, labels, types=types, extra_state=(cfg, state), forward=fwd)


def minilm():
    d = os.popen(f"sh {ROOT}/scripts/find-minilm.sh").read().strip()
    tok = tf.AutoTokenizer.from_pretrained(d)
    m = tf.BertModel.from_pretrained(d).eval()
    sentences = ["A man is eating food.", "The quick brown fox jumps over the lazy dog.",
                 "Fine-tuning transformers in C on a CPU.", "It's raining cats and dogs!",
                 "Sentence embeddings map text to vectors; similar meanings end up close together.",
                 "héllo wörld"]
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = m(**enc).last_hidden_state
    mf = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (h * mf).sum(1) / mf.sum(1)
    save_file({"input_ids": enc["input_ids"].int(), "attention_mask": enc["attention_mask"].int(),
               "token_type_ids": enc["token_type_ids"].int(), "hidden": h.contiguous(), "pooled": pooled},
              os.path.join(OUT, "minilm_ref.safetensors"))
    print("minilm:", tuple(h.shape))


STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
         "One day, she saw a big red ball. She ran to get it and kicked it high in the sky. "
         "Her friend Tom came to play with her. They were very happy.")


def stories():
    d = "/work/shared/data/models/stories260K-hf"
    from tokenizers import Tokenizer
    ids = torch.tensor([Tokenizer.from_file(os.path.join(d, "tokenizer.json")).encode(STORY).ids])
    m = tf.LlamaForCausalLM.from_pretrained(d).eval()
    with torch.no_grad():
        loss = m(input_ids=ids, labels=ids).loss
    save_file({"input_ids": ids.int(), "loss": loss.reshape(1).float()}, os.path.join(OUT, "stories260k_ref.safetensors"))
    with open(os.path.join(OUT, "stories260k_story.txt"), "w") as f:
        f.write(STORY)
    # what `ftc eval --data stories260k_story.txt` must print: whole text in one window, and windows of 32
    # tokens that share one token (each token after the first predicted once, from its window's prefix)
    ref = {"n_tokens": ids.shape[1] - 1, "loss": loss.item()}
    n, ctx, total = ids.shape[1], 32, 0.0
    with torch.no_grad():
        for start in range(0, n - 1, ctx - 1):
            w = ids[:, start:start + ctx]
            total += m(input_ids=w, labels=w).loss.item() * (w.shape[1] - 1)
    ref["loss_context32"] = total / (n - 1)
    with open(os.path.join(OUT, "stories260k_eval.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"stories260K: {ids.shape[1]} tokens, loss {loss.item():.4f} (uniform {math.log(512):.4f})")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gpt2()
    llama("llama_gqa", tie=False, kv=2, theta=500.0)
    llama("llama_tied", tie=True, kv=1, theta=1e6)
    llama("qwen2", tie=False, kv=2, theta=20000.0, qwen=True)
    llama("llama_cls", tie=False, kv=2, theta=500.0, cls=3)
    bert_cls()
    bert_mean()
    minilm()
    stories()
    llama("mistral", tie=False, kv=2, theta=1e6, mistral=True)  # sliding window 16 > T: plain causal
    gpt2(cls=4)
