#!/usr/bin/env python3
"""Fixtures for the tokenizer components the real tokenizers in ../shared/data do not use.

Each case takes a real tokenizer.json (its vocab and merges) and swaps in other normalizers,
pre-tokenizers, post-processors, decoders and added tokens, built with HF `tokenizers`' own API.
tests/fixtures/tokcomp_<case>.json holds {"base": dir, "override": {the swapped tokenizer.json fields},
"model_patch": {BPE flags set on "model"},
"lines": [[corpus line index, ids, decode(ids, skip_special_tokens=False)], ...]} for every 3rd corpus
line (without code points unassigned in Unicode 14). tests/test_tokenizer_components.c rebuilds each tokenizer.json and requires identical ids and decode.

Usage: python3 tools/gen_tokenizer_components.py   (pip install tokenizers)
"""
import json
import os
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "tests", "fixtures")
TOK = os.path.join(ROOT, "..", "shared", "data", "tokenizers")
LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
FIELDS = ["normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens"]


def case_wordpiece(t):
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase(),
                                         normalizers.Strip()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                               pre_tokenizers.Digits(individual_digits=True)])
    t.post_processor = processors.BertProcessing(("[SEP]", 102), ("[CLS]", 101))
    t.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    t.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=False)])
    t.add_tokens([AddedToken("hello world", single_word=True, normalized=True),
                  AddedToken("<sep>", rstrip=True, normalized=False)])


def case_wordpiece_split(t):
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                         normalizers.Replace(Regex(r"\d+"), "0")])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(),
        pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="merged_with_previous"),
        pre_tokenizers.Split("s", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{P}+"), behavior="contiguous", invert=True),
        pre_tokenizers.Digits(individual_digits=False)])
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP] [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                     special_tokens=[("[CLS]", 101), ("[SEP]", 102)])


def case_bytelevel_llama3(t):
    # Llama 3 / Qwen2 style: Split regex then ByteLevel without its regex; RoBERTa post-processor
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated"),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.post_processor = processors.RobertaProcessing(("<|endoftext|>", 50256), ("<|endoftext|>", 50256))
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([AddedToken("<|im_start|>", normalized=False), AddedToken("<|im_end|>", normalized=False)])


def case_bytelevel_prefix(t):
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    t.post_processor = processors.ByteLevel(trim_offsets=True)
    t.add_tokens([AddedToken(" hello", normalized=True), AddedToken("[CLS]", single_word=True, lstrip=True, rstrip=True)])


def case_metaspace(t):
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first"),
                                   decoders.ByteFallback(), decoders.Fuse()])
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B:1 </s>:1",
                                                     special_tokens=[("<s>", 1), ("</s>", 2)])


def case_metaspace_always(t):
    t.normalizer = None
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    t.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 1)])
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, single_word=False)])


CASES = [("wordpiece", "bert-base-uncased", case_wordpiece), ("wordpiece_split", "bert-base-uncased", case_wordpiece_split),
         ("bytelevel_llama3", "gpt2", case_bytelevel_llama3), ("bytelevel_prefix", "gpt2", case_bytelevel_prefix),
         ("metaspace", "llama2", case_metaspace), ("metaspace_always", "llama2", case_metaspace_always)]


def main():
    with open(os.path.join(FIX, "tokenizer_corpus.jsonl"), encoding="utf-8") as f:
        corpus = [json.loads(l) for l in f]
    for name, base, build in CASES:
        t = Tokenizer.from_file(os.path.join(TOK, base, "tokenizer.json"))
        build(t)
        t.no_truncation()
        t.no_padding()
        full = json.loads(t.to_str())
        override = {k: full[k] for k in FIELDS}
        model_patch = {k: full["model"][k] for k in ["ignore_merges", "byte_fallback", "fuse_unk"] if k in full["model"]}
        # HF validates what it saves: reload from the JSON we will rebuild in C
        t = Tokenizer.from_str(t.to_str())
        lines, ntok = [], 0
        for i in range(0, len(corpus), 3):
            # Code points unassigned in Unicode 14 (Python 3.11's tables; PCRE2 10.42 has 14, utf8proc 2.6 has 13)
            # but assigned later are classified by HF with newer tables; the regex-heavy cases here skip them.
            if any(unicodedata.category(c) == "Cn" for c in corpus[i]):
                continue
            ids = t.encode(corpus[i]).ids
            ntok += len(ids)
            lines.append([i, ids, t.decode(ids, skip_special_tokens=False)])
        out = os.path.join(FIX, f"tokcomp_{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"base": base, "override": override, "model_patch": model_patch, "lines": lines}, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: {len(lines)} lines, {ntok} tokens, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
