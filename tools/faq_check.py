#!/usr/bin/env python3
"""Checks the demo FAQ data (examples/faq) so the held-out test set really is held out.

Usage: python3 tools/faq_check.py [examples/faq]      (standard library only)

Checks, and exits 1 if any fails:
  - train.jsonl / test.jsonl: every line is {"text": str, "label": str}, labels are keys of answers.json,
    every intent of answers.json has >= 20 training and >= 8 test questions;
  - no exact duplicate (after lower-casing and dropping punctuation) within or across the sets;
  - no near-duplicate between train and test: word-set Jaccard >= 0.7, or difflib character
    similarity >= 0.85 (catches a typo or one swapped word).
Prints the statistics and the most similar train/test pair per intent, for a human to judge.
"""
import difflib
import json
import re
import sys
from collections import Counter, defaultdict

MIN_TRAIN, MIN_TEST = 20, 8
JACCARD_MAX, CHAR_RATIO_MAX = 0.7, 0.85


def norm(text):
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def load(path, intents, problems):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: not JSON: {e}")
                continue
            if set(obj) != {"text", "label"} or not all(isinstance(obj[k], str) for k in obj):
                problems.append(f"{path}:{n}: want exactly string fields text, label")
                continue
            if obj["label"] not in intents:
                problems.append(f"{path}:{n}: label {obj['label']!r} not in answers.json")
            rows.append((n, obj["text"], obj["label"]))
    return rows


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "examples/faq"
    problems = []
    with open(f"{root}/answers.json", encoding="utf-8") as f:
        answers = json.load(f)
    train = load(f"{root}/train.jsonl", answers, problems)
    test = load(f"{root}/test.jsonl", answers, problems)

    n_train, n_test = Counter(r[2] for r in train), Counter(r[2] for r in test)
    for intent in answers:
        if n_train[intent] < MIN_TRAIN or n_test[intent] < MIN_TEST:
            problems.append(f"intent {intent}: {n_train[intent]} train / {n_test[intent]} test questions")

    seen = {}
    for name, rows in (("train", train), ("test", test)):
        for n, text, label in rows:
            key = norm(text)
            if key in seen:
                problems.append(f"duplicate: {name}:{n} {text!r} = {seen[key]}")
            seen[key] = f"{name}:{n} ({label})"

    closest = defaultdict(lambda: (0.0, "", ""))
    n_pairs = 0
    for _, a, la in test:
        na, wa = norm(a), set(norm(a).split())
        for _, b, lb in train:
            nb, wb = norm(b), set(norm(b).split())
            n_pairs += 1
            jac = len(wa & wb) / len(wa | wb)
            matcher = difflib.SequenceMatcher(None, na, nb)
            ratio = matcher.ratio() if matcher.quick_ratio() >= CHAR_RATIO_MAX else 0.0
            if jac >= JACCARD_MAX or ratio >= CHAR_RATIO_MAX:
                problems.append(f"near-duplicate (jaccard {jac:.2f}, chars {ratio:.2f}): test {a!r} ({la}) ~ train {b!r} ({lb})")
            score = max(jac, ratio)
            if la == lb and score > closest[la][0]:
                closest[la] = (score, a, b)

    print(f"{len(answers)} intents, {len(train)} train and {len(test)} test questions "
          f"(per intent: train {min(n_train.values())}-{max(n_train.values())}, "
          f"test {min(n_test.values())}-{max(n_test.values())})")
    print(f"compared {n_pairs} train/test pairs; thresholds: word Jaccard < {JACCARD_MAX}, char ratio < {CHAR_RATIO_MAX}")
    print("closest same-intent train/test pair per intent:")
    for intent in answers:
        s, a, b = closest[intent]
        print(f"  {s:.2f} {intent}: {a!r} ~ {b!r}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        return 1
    print("OK: no duplicates or near-duplicates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
