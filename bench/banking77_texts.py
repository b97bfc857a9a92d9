"""Banking77's questions as a plain-text corpus for the quantized-base LoRA benches (quant_bench.sh,
merge_quality.sh): the first 2000 rows of train.csv and the first 500 of test.csv, one {"text"} JSON object a line.

    python3 bench/banking77_texts.py SHARED/banking77 OUTDIR   ->  OUTDIR/train.jsonl, OUTDIR/test.jsonl
"""
import csv
import json
import sys

src, out = sys.argv[1], sys.argv[2]
for name, n in (("train", 2000), ("test", 500)):
    with open(f"{src}/{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    with open(f"{out}/{name}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"text": r["text"]}) + "\n")
