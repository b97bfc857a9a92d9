#!/usr/bin/env bash
# ftc classify on a run trained here (MiniLM, head method, a few steps on the FAQ demo data, pre-tokenized with
# ftc tokenize): label/probability/top-3 as text and JSONL, texts from arguments, plain lines and JSONL, the
# same probabilities whatever the batching (padding masked), label names from the run, errors and exit codes.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
MINI=${FTC_MINILM_DIR:-}
[ -n "$MINI" ] && [ -f "$MINI/config.json" ] || { echo "SKIP: MiniLM not installed"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# a small run: 48 FAQ questions of 3 intents
grep -E '"(create_account|end_ride|unlock_bike)"' "$SRC/examples/faq/train.jsonl" | head -48 > "$tmp/data.jsonl"
python3 - "$tmp" <<'PY' || fail "data"
import json, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/data.jsonl", encoding="utf-8")]
open(f"{d}/texts.txt", "w", encoding="utf-8").write("".join(r["text"] + "\n" for r in recs))
PY
"$FTC" tokenize --model "$MINI" --file "$tmp/texts.txt" > "$tmp/ids.txt" || fail "tokenize"
python3 - "$tmp" <<'PY' || fail "tokenized data"
import json, sys
d = sys.argv[1]
recs = [json.loads(l) for l in open(f"{d}/data.jsonl", encoding="utf-8")]
ids = [l.split() for l in open(f"{d}/ids.txt")]
with open(f"{d}/tok.jsonl", "w") as f:
    for r, i in zip(recs, ids):
        f.write(json.dumps({"input_ids": [int(x) for x in i], "label": r["label"]}) + "\n")
PY
# validation on the same data: the run's best accuracy is what classify must reproduce from the texts
"$FTC" train --model "$MINI" --data "$tmp/tok.jsonl" --val "$tmp/tok.jsonl" --out "$tmp/run" --task classify \
  --method head --max-steps 6 --batch 8 --lr 5e-2 --metric accuracy --eval-every 3 --quiet > /dev/null 2> "$tmp/train.err" || fail "train: $(cat "$tmp/train.err")"

# text output: LABEL TAB PROB TAB top: ... TAB TEXT, one line per argument
"$FTC" classify --model "$tmp/run" "How do I sign up?" "I want to end my ride" > "$tmp/out.txt" 2> "$tmp/e" ||
  fail "classify exited $?: $(cat "$tmp/e")"
[ "$(wc -l < "$tmp/out.txt")" -eq 2 ] || fail "expected 2 lines: $(cat "$tmp/out.txt")"
python3 - "$tmp" <<'PY' || fail "text output: $(cat "$tmp/out.txt")"
import json, sys
d = sys.argv[1]
names = json.load(open(f"{d}/run/labels.json"))
assert sorted(names) == ["create_account", "end_ride", "unlock_bike"], names
texts = ["How do I sign up?", "I want to end my ride"]
for line, text in zip(open(f"{d}/out.txt", encoding="utf-8"), texts):
    label, prob, top, t = line.rstrip("\n").split("\t")
    assert t == text and label in names, line
    entries = [e.split() for e in top[len("top: "):].split(", ")]
    assert top.startswith("top: ") and len(entries) == 3, top
    probs = [float(p) for _, p in entries]
    assert entries[0][0] == label and abs(probs[0] - float(prob)) < 1e-4, line
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3, probs  # 3 labels: all of them
PY

# JSONL from a JSONL file and from a plain file; batch 1 and 16 give the same probabilities
"$FTC" classify --model "$tmp/run" --jsonl --file "$tmp/data.jsonl" > "$tmp/a.jsonl" || fail "--file jsonl"
"$FTC" classify --model "$tmp/run" --jsonl --batch 1 --top 2 --file "$tmp/texts.txt" > "$tmp/b.jsonl" || fail "--file txt"
python3 - "$tmp" <<'PY' || fail "jsonl outputs"
import json, sys
d = sys.argv[1]
a = [json.loads(l) for l in open(f"{d}/a.jsonl")]
b = [json.loads(l) for l in open(f"{d}/b.jsonl")]
recs = [json.loads(l) for l in open(f"{d}/data.jsonl", encoding="utf-8")]
assert len(a) == len(b) == len(recs) == 48
for x, y, r in zip(a, b, recs):
    assert x["text"] == y["text"] == r["text"]
    assert x["label"] == y["label"] == x["top"][0]["label"]
    assert abs(x["probability"] - y["probability"]) < 1e-5, (x, y)   # padding in a batch of 16 changes nothing
    assert len(x["top"]) == 3 and len(y["top"]) == 2
PY
# the same accuracy as the trainer measured on these examples (its tokenization, pooling, padding)
python3 - "$tmp" <<'PY' || fail "accuracy differs from the run's"
import json, sys
d = sys.argv[1]
a = [json.loads(l) for l in open(f"{d}/a.jsonl")]
recs = [json.loads(l) for l in open(f"{d}/data.jsonl", encoding="utf-8")]
acc = sum(x["label"] == r["label"] for x, r in zip(a, recs)) / len(recs)
best = max(json.loads(l)["accuracy"] for l in open(f"{d}/run/metrics.jsonl") if "accuracy" in l)
print(f"classify accuracy {acc:.6f}, run's best validation accuracy {best:.6f}")
assert abs(acc - best) < 1e-6
PY
# standard input
n=$(head -3 "$tmp/texts.txt" | "$FTC" classify --model "$tmp/run" --file - | wc -l)
[ "$n" -eq 3 ] || fail "stdin gave $n lines"

# errors
"$FTC" classify --help | grep -q "^Usage: ftc classify" || fail "--help"
"$FTC" classify "x" > /dev/null 2>&1; [ $? -eq 1 ] || fail "missing --model should exit 1"
"$FTC" classify --model "$tmp/run" > /dev/null 2>&1; [ $? -eq 1 ] || fail "no texts should exit 1"
printf 'fine line\n{"txt": "no text key"}\n' > "$tmp/bad.jsonl"
"$FTC" classify --model "$tmp/run" --file "$tmp/bad.jsonl" > /dev/null 2> "$tmp/e"; [ $? -eq 2 ] || fail "bad jsonl"
grep -q "bad.jsonl:2: field \"text\"" "$tmp/e" || fail "bad jsonl message: $(cat "$tmp/e")"
"$FTC" classify --model "$tmp/run" --file "$tmp/missing.txt" > /dev/null 2>&1; [ $? -eq 2 ] || fail "missing file"
"$FTC" classify --model "$MINI" "x" > /dev/null 2> "$tmp/e"; [ $? -eq 2 ] || fail "no head should exit 2"
grep -q "no classification head" "$tmp/e" || fail "no head message: $(cat "$tmp/e")"
"$FTC" generate --model "$tmp/run" --prompt x > /dev/null 2> "$tmp/e"; [ $? -eq 1 ] || fail "generate on classify run"
grep -q "trained for classify" "$tmp/e" || fail "generate on classify run: $(cat "$tmp/e")"
echo "cli_classify: ok"
