#!/usr/bin/env python3
"""Fixtures for the Jinja interpreter (src/data/jinja/, tests/test_jinja.c): what Python's jinja2 renders in the
environment transformers' apply_chat_template builds, for

  - real chat templates (tests/fixtures/jinja/templates/*.jinja, origins in SOURCES.json) x the conversations
    below, with and without add_generation_prompt  ->  tests/fixtures/jinja/renders/<template>.json
  - small snippets, one language feature each  ->  tests/fixtures/jinja/snippets.json
  - {% generation %} spans (transformers' return_assistant_tokens_mask markup)  ->  inside the render files

Reference stack (not the project's usual 4.38: the chat template environment changed since; this mirrors
current transformers): a venv outside the repo with
    python3 -m venv /work/peers/tfvenv && /work/peers/tfvenv/bin/pip install transformers==5.24.0 jinja2==3.1.6
    /work/peers/tfvenv/bin/python tools/gen_template_fixtures.py
Versions used for the committed fixtures: transformers 5.24.0, jinja2 3.1.6, Python 3.11.

The variables each template sees are exactly what transformers passes (apply_chat_template ->
render_jinja_template): messages (None-valued keys dropped, reasoning fields aliased), tools (None when not
given), documents (None), add_generation_prompt, the tokenizer's special tokens, extra keyword arguments.
strftime_now reads a fixed clock (2024-07-26 12:00 local time, "now" in each file) so renders are stable.
Every render is also checked against transformers' own render_jinja_template. A render that raises is recorded
as an error (the C interpreter must fail there too).
"""
import datetime as _dt
import json
import os
import re
import sys
import time

from jinja2 import __version__ as jinja_version
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FX = os.path.join(ROOT, "tests", "fixtures", "jinja")

NOW = _dt.datetime(2024, 7, 26, 12, 0, 0)


class FixedClock(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


ctu.datetime = FixedClock  # strftime_now reads datetime.now()

WEATHER = {"type": "function", "function": {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current local time in a city (24 h, \"HH:MM\")",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "Città / 都市"}},
                   "required": ["city"]}}}

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"messages": [{"role": "system", "content": "You are a concise assistant."},
                  {"role": "user", "content": "Hi!"},
                  {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Name a prime number."}]},
    {"messages": [{"role": "user", "content": "Count to two."},
                  {"role": "assistant", "content": "One, two."},
                  {"role": "user", "content": "And to three?"},
                  {"role": "assistant", "content": "One, two, three."}]},
    {"messages": [{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": ""},
                  {"role": "user", "content": ""}]},
    {"messages": [{"role": "system", "content": "あなたは親切なアシスタントです。"},
                  {"role": "user", "content": "日本の首都はどこですか？ 🗾 Ünïcödé «ok»"},
                  {"role": "assistant", "content": "東京です。"}]},
    {"messages": [{"role": "user", "content": "  spaced \n\n lines\t "},
                  {"role": "assistant", "content": "Quotes ' \" and braces {{ x }} {% y %} \\ backslash\n"}]},
    {"messages": [{"role": "system", "content": "You are a weather bot."},
                  {"role": "user", "content": "What's the weather in Paris?"}],
     "tools": [WEATHER, TIME]},
    {"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [{"id": "abc123def", "type": "function",
                                   "function": {"name": "get_current_weather",
                                                "arguments": {"location": "Paris", "unit": "celsius"}}}]},
                  {"role": "tool", "tool_call_id": "abc123def", "name": "get_current_weather", "content": "22"},
                  {"role": "assistant", "content": "It is 22 °C in Paris."}],
     "tools": [WEATHER]},
    {"messages": [{"role": "user", "content": "What is 2+2?"}], "kwargs": {"enable_thinking": False}},
    {"messages": [{"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4", "reasoning_content": "Simple arithmetic."},
                  {"role": "user", "content": "And 3+3?"}]},
]

# The special tokens each family's tokenizer_config.json declares (transformers passes them as variables).
SPECIAL = [
    (("meta-llama-", "NousResearch-Hermes-2-Pro-Llama-3", "NousResearch-Hermes-3", "fireworks-ai-llama-3",
      "meetkai-functionary-medium-v3"), {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    (("meta-llama-Llama-2",), {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    (("Qwen-", "HuggingFaceTB-SmolLM3", "teknium-", "chatml-"), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    (("HuggingFaceTB-SmolLM2",), {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                                  "pad_token": "<|im_end|>"}),
    (("deepseek-ai-DeepSeek-R1", "deepseek-ai-deepseek-llm", "DeepSeek-V2"),
     {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    (("google-",), {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}),
    (("microsoft-Phi-3", "Phi-3"), {"bos_token": "<s>", "eos_token": "<|endoftext|>"}),
    (("phi-4",), {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}),
    (("CohereForAI-", "CohereLabs-"), {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>"}),
    (("ibm-granite-",), {"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"}),
    (("LiquidAI-",), {"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>"}),
    (("ai-sage-GigaChat",), {"bos_token": "<s>", "eos_token": "</s>",
                             "additional_special_tokens": ["<|role_sep|>", "<|message_sep|>", "[]", "<|function_call|>"]}),
]


def special_tokens(name):
    for prefixes, toks in SPECIAL:
        if name.startswith(prefixes):
            return dict(toks)
    return {"bos_token": "<s>", "eos_token": "</s>"}


def template_vars(conv, agp, special):
    """The keyword arguments transformers' apply_chat_template ends up passing to template.render()."""
    msgs = ctu._normalize_chat_messages(conv["messages"])
    msgs = ctu._alias_reasoning_fields(ctu._plain_template_data(msgs))
    kwargs = {**special, **conv.get("kwargs", {})}
    return {"messages": msgs, "tools": conv.get("tools"), "documents": None, "add_generation_prompt": agp, **kwargs}


def render(tpl, vars_):
    try:
        compiled = ctu._compile_jinja_template(tpl)
        rendered, indices = ctu._render_with_assistant_indices(
            compiled_template=compiled, **vars_) if re.search(r"\{%-?\s*generation", tpl) else (compiled.render(**vars_), [])
        return {"text": rendered, "generation": [list(s) for s in indices]} if indices else {"text": rendered}
    except Exception as e:  # the C interpreter must fail here too
        return {"error": f"{type(e).__name__}: {e}"}


def check_against_transformers(tpl, conv, agp, special, got):
    """The same render through transformers' public path (render_jinja_template), to be sure template_vars()
    passes what apply_chat_template passes."""
    try:
        out, _ = ctu.render_jinja_template(conversations=[ctu._normalize_chat_messages(conv["messages"])],
                                           tools=conv.get("tools"), chat_template=tpl, add_generation_prompt=agp,
                                           **{**special, **conv.get("kwargs", {})})
        want = {"text": out[0]}
    except Exception as e:
        want = {"error": f"{type(e).__name__}: {e}"}
    assert ("error" in want) == ("error" in got) and want.get("text") == got.get("text"), (want, got)


# Loss masks against transformers' return_assistant_tokens_mask: templates with {% generation %} blocks (two real
# ones, and the presets with their answers + end-of-turn marked, as transformers' docs mark chatml). For the
# marked presets ftc also renders the unmarked preset, whose mask it finds without the blocks (from renders of
# message prefixes): both must equal transformers'.
MARKED = {
    "chatml": "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
              "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}"
              "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama3": "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
              "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
              "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
              "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    "zephyr": "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' }}{% if message['role'] == 'assistant' %}"
              "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{% else %}"
              "{{ message['content'] + eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
}
MASK_TOKENIZERS = {"gpt2": ("tokenizers/gpt2", "<|endoftext|>", "<|endoftext|>"),
                   "llama2": ("tokenizers/llama2", "<s>", "</s>")}
MASK_CONVERSATIONS = [1, 2, 3, 5, 6]


def masks(shared):
    from transformers import PreTrainedTokenizerFast
    cases = []
    templates = {"HuggingFaceTB-SmolLM3-3B": None, "LiquidAI-LFM2.5-VL-450M": None}
    for name in templates:
        templates[name] = open(os.path.join(FX, "templates", name + ".jinja"), encoding="utf-8", newline="").read()
    for preset, src in MARKED.items():
        templates["marked-" + preset] = src
    for tname, (sub, bos, eos) in MASK_TOKENIZERS.items():
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(shared, sub, "tokenizer.json"), bos_token=bos,
                                      eos_token=eos)
        for name, tpl in templates.items():
            for ci in MASK_CONVERSATIONS:
                conv = CONVERSATIONS[ci]
                out = tok.apply_chat_template(conv["messages"], chat_template=tpl, tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
                case = {"tokenizer": tname, "template": name, "conversation": ci, "ids": list(out["input_ids"]),
                        "mask": list(out["assistant_masks"])}
                if name.startswith("marked-"):
                    case["marked_source"] = tpl
                    case["unmarked_preset"] = name[len("marked-"):]
                cases.append(case)
    return cases


def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, ensure_ascii=False, indent=0)
        f.write("\n")
    size = os.path.getsize(path)
    assert size < 1 << 20, f"{path} is {size} bytes"


def main():
    tdir = os.path.join(FX, "templates")
    sources = json.load(open(os.path.join(tdir, "SOURCES.json")))
    os.makedirs(os.path.join(FX, "renders"), exist_ok=True)
    now = int(time.mktime(NOW.timetuple()))
    # "seen": the messages as the template sees them after transformers' normalisation
    write(os.path.join(FX, "conversations.json"),
          [{**c, "seen": template_vars(c, False, {})["messages"]} for c in CONVERSATIONS])
    examples = json.load(open(os.path.join(tdir, "EXAMPLES.json")))["examples"]
    total = errors = 0
    for name in sorted(sources):
        tpl = open(os.path.join(tdir, name + ".jinja"), encoding="utf-8", newline="").read()
        special = special_tokens(name)
        cases = []
        for ci, conv in enumerate(CONVERSATIONS):
            for agp in (False, True):
                got = render(tpl, template_vars(conv, agp, special))
                check_against_transformers(tpl, conv, agp, special, got)
                cases.append({"conversation": ci, "add_generation_prompt": agp, **got})
                total += 1
                errors += "error" in got
        # the variables other test suites render this template with (tool formats of its own)
        for ex in examples.get(name, []):
            ex = dict(ex)
            msgs = ctu._alias_reasoning_fields(ctu._plain_template_data(ctu._normalize_chat_messages(ex.pop("messages"))))
            v = {"messages": msgs, "tools": ex.pop("tools", None), "documents": ex.pop("documents", None),
                 "add_generation_prompt": ex.pop("add_generation_prompt", False), **ex}
            got = render(tpl, v)
            cases.append({"vars": v, **got})
            total += 1
            errors += "error" in got
        write(os.path.join(FX, "renders", name + ".json"),
              {"template": name, "source": sources[name], "special_tokens": special, "now": now, "cases": cases})
    # snippets: one feature each, rendered with a small conversation
    snippets = json.load(open(os.path.join(FX, "snippet_sources.json")))
    msgs = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "  Hi é  "},
            {"role": "assistant", "content": "Hello!"}]
    out = []
    for s in snippets:
        v = {"messages": msgs, "add_generation_prompt": False, "bos_token": "<s>", "eos_token": "</s>"}
        out.append({"template": s, **render(s, v)})
    write(os.path.join(FX, "snippets.json"), {"now": now, "vars": {"messages": msgs, "add_generation_prompt": False,
                                                                   "bos_token": "<s>", "eos_token": "</s>"},
                                              "cases": out})
    shared = os.environ.get("FTC_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
    mcases = masks(shared)
    write(os.path.join(FX, "masks.json"), {"now": now, "bos_eos": {k: [v[1], v[2]] for k, v in MASK_TOKENIZERS.items()},
                                           "cases": mcases})
    print(f"transformers {transformers.__version__}, jinja2 {jinja_version}: {len(sources)} templates, "
          f"{total} renders ({errors} raise), {len(out)} snippets, {len(mcases)} masks", file=sys.stderr)


if __name__ == "__main__":
    main()
