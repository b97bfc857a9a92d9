#!/usr/bin/python3
"""Fixtures for tests/test_data.c: chat templates rendered and tokenized by transformers'
apply_chat_template (the official Jinja sources, set on the tokenizer), loss labels, classification
truncation, and prompt/completion examples.

Run with Debian's python3 (transformers 4.38.2 + jinja2):
    /usr/bin/python3 tools/gen_data_fixtures.py
Writes tests/fixtures/data/templates.json. Needs ../shared/data (tokenizers, stories260K-hf).

Labels ("trained" tokens): a token is trained when its first character lies inside a trained span
(assistant content + the template's end-of-turn marker), found from the tokenizer's offsets. This is
independent of ftc's method (common prefix of prefix tokenizations); the C test compares them.
"""
import json
import os
import sys

from transformers import PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("FTC_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
OUT = os.path.join(ROOT, "tests", "fixtures", "data", "templates.json")

# The official templates as published with the models (chatml: transformers' docs example).
JINJA = {
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
}

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris."}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "  Say hi  "},
     {"role": "assistant", "content": "Hi there!\n"},
     {"role": "user", "content": "And in German?"},
     {"role": "assistant", "content": "Hallo, grüß dich."}],
    [{"role": "user", "content": "Count: one, two"},
     {"role": "assistant", "content": "three", "weight": 0},
     {"role": "user", "content": "again"},
     {"role": "assistant", "content": "three, four"}],
]

TOKENIZERS = {
    "gpt2": ("tokenizers/gpt2", "<|endoftext|>", "<|endoftext|>"),
    "llama2": ("tokenizers/llama2", "<s>", "</s>"),
    "stories260K": ("models/stories260K-hf", "<s>", "</s>"),
}


def load(name):
    d, bos, eos = TOKENIZERS[name]
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(SHARED, d, "tokenizer.json"), bos_token=bos,
                                   eos_token=eos)


def spans(template, msgs, bos, eos):
    """(rendered text, [(start, end)] trained character spans) by the rules in src/data/template.c."""
    text, out = "", []

    def put(s, trained):
        nonlocal text
        if trained:
            out.append((len(text), len(text) + len(s)))
        text += s

    if template == "chatml":
        for m in msgs:
            tr = m["role"] == "assistant" and m.get("weight", 1) == 1
            put("<|im_start|>" + m["role"] + "\n", False)
            put(m["content"] + "<|im_end|>", tr)
            put("\n", False)
    elif template == "llama3":
        for i, m in enumerate(msgs):
            tr = m["role"] == "assistant" and m.get("weight", 1) == 1
            put((bos if i == 0 else "") + "<|start_header_id|>" + m["role"] + "<|end_header_id|>\n\n", False)
            put(m["content"].strip() + "<|eot_id|>", tr)
    elif template == "llama2":
        loop, system = msgs, None
        if msgs[0]["role"] == "system":
            loop, system = msgs[1:], msgs[0]["content"]
        for i, m in enumerate(loop):
            if m["role"] == "user":
                c = m["content"]
                if i == 0 and system is not None:
                    c = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + c
                put(bos + "[INST] " + c.strip() + " [/INST]", False)
            else:
                put(" " + m["content"].strip() + " " + eos, m.get("weight", 1) == 1)
    elif template == "zephyr":
        for m in msgs:
            tr = m["role"] == "assistant" and m.get("weight", 1) == 1
            put("<|" + m["role"] + "|>\n", False)
            put(m["content"] + eos, tr)
            put("\n", False)
    elif template == "plain":
        for i, m in enumerate(msgs):
            if i:
                put("\n\n", False)
            if m["role"] == "system":
                put(m["content"], False)
            elif m["role"] == "user":
                put("### Question:\n" + m["content"], False)
            else:
                put("### Answer:\n", False)
                put(m["content"] + eos, m.get("weight", 1) == 1)
    return text, out


def labels_from_offsets(enc, trained):
    labels = []
    for tid, (s, e) in zip(enc.ids, enc.offsets):
        # a token whose first character is inside a trained span is trained
        inside = any(a <= s < b for a, b in trained) if e > s else False
        labels.append(tid if inside else -100)
    return labels


def main():
    cases = []
    for tname in TOKENIZERS:
        tok = load(tname)
        bos, eos = tok.bos_token, tok.eos_token
        for template in ["chatml", "llama3", "llama2", "zephyr", "plain"]:
            for ci, msgs in enumerate(CONVERSATIONS):
                text, trained = spans(template, msgs, bos, eos)
                if template != "plain":
                    tok.chat_template = JINJA[template]
                    clean = [{"role": m["role"], "content": m["content"]} for m in msgs]
                    rendered = tok.apply_chat_template(clean, tokenize=False)
                    ids = tok.apply_chat_template(clean, tokenize=True)
                    assert rendered == text, (template, tname, rendered, text)
                    special = False
                else:
                    # base-model format: the tokenizer's own special tokens (BOS for Llama) as encode() adds them
                    ids = tok(text, add_special_tokens=True)["input_ids"]
                    special = True
                enc = tok._tokenizer.encode(text, add_special_tokens=special)
                assert enc.ids == ids, (template, tname)
                labels = labels_from_offsets(enc, trained)
                cases.append({"tokenizer": tname, "template": template, "conversation": ci, "text": text,
                              "ids": ids, "labels": labels})
        # prompt/completion: prompt untrained, completion + EOS trained, encode() with special tokens
        for prompt, completion in [("Translate to French: cheese =>", " fromage"), ("2+2=", "4")]:
            text = prompt + completion + eos
            enc = tok._tokenizer.encode(text, add_special_tokens=True)
            labels = labels_from_offsets(enc, [(len(prompt), len(text))])
            cases.append({"tokenizer": tname, "template": "completion", "prompt": prompt, "completion": completion,
                          "text": text, "ids": enc.ids, "labels": labels})
    # classification: BERT's [CLS] text [SEP], truncated right and left to 8 tokens
    bert = PreTrainedTokenizerFast(tokenizer_file=os.path.join(SHARED, "tokenizers/bert-base-uncased/tokenizer.json"))
    classify = []
    for text in ["I am still waiting on my card?", "How do I know if I will get my card, or if it is lost?"]:
        full = bert(text)["input_ids"]
        bert.truncation_side = "right"
        right = bert(text, truncation=True, max_length=8)["input_ids"]
        bert.truncation_side = "left"
        left = bert(text, truncation=True, max_length=8)["input_ids"]
        classify.append({"text": text, "ids": full, "right8": right, "left8": left})
    # text pairs: [CLS] a [SEP] b [SEP], token types, longest-first truncation to 12
    bert.truncation_side = "right"
    pairs = []
    for a, b in [("A man is playing a guitar.", "Someone plays an instrument on a small stage tonight."),
                 ("Is the card lost?", "No.")]:
        full = bert(a, b)
        cut = bert(a, b, truncation=True, max_length=12)
        pairs.append({"text": a, "text_pair": b, "ids": full["input_ids"], "type_ids": full["token_type_ids"],
                      "ids12": cut["input_ids"], "type_ids12": cut["token_type_ids"]})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"conversations": CONVERSATIONS, "jinja": JINJA, "cases": cases, "classify": classify, "pairs": pairs}, f,
                  ensure_ascii=False, indent=0)
    print(f"wrote {OUT}: {len(cases)} template cases, {len(classify)} classify cases", file=sys.stderr)


if __name__ == "__main__":
    main()
