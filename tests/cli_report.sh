#!/bin/bash
# ftc report as a user runs it: writes the page and prints its path; usage errors exit 1,
# bad input exits 2 with the file and line named. With MiniLM: three small runs (head, lora, full) compared
# on one page, the most confident mistakes of ftc eval checked against ftc classify, and (with chromium) the
# comparison rendered and its screenshot checked for the runs' colours.
set -u
ftc=${FTC_BIN:-build/ftc}
src=${FTC_SOURCE_DIR:-.}
dir=$(mktemp -d /tmp/ftc_cli_report_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$ftc" report --help | grep -q "Usage: ftc report RUNDIR" || fail "--help"
"$ftc" report >/dev/null 2>&1; [ $? -eq 1 ] || fail "no run directory should exit 1"
"$ftc" report "$dir" --bogus >/dev/null 2>&1; [ $? -eq 1 ] || fail "unknown flag should exit 1"

mkdir "$dir/one"
cp "$src"/tests/fixtures/report_run_classify/* "$dir/one"/
out=$("$ftc" report --run "$dir/one") || fail "report on the fixture run failed"
[ "$out" = "$dir/one/report.html" ] || fail "printed '$out', want the report path"
grep -q "<h2>Confusion matrix</h2>" "$dir/one/report.html" || fail "no confusion matrix"
out=$("$ftc" report "$dir/one" --out "$dir/elsewhere.html") || fail "report --out failed"
[ "$out" = "$dir/elsewhere.html" ] && cmp -s "$dir/one/report.html" "$dir/elsewhere.html" \
  || fail "one run with --out: the same page at FILE"

# several runs: the page goes to ./report.html unless --out; one broken run: exit 2, nothing written
mkdir "$dir/two"
cp "$src"/tests/fixtures/report_run_lm/* "$dir/two"/
(cd "$dir" && "$ftc" report one two >/dev/null) || fail "report of two runs failed"
grep -q "<h1>ftc report: 2 runs</h1>" "$dir/report.html" || fail "two runs: no page at ./report.html"
printf '{"step": 1, "loss": 2.0}\nnot json\n' > "$dir/two/metrics.jsonl"
err=$("$ftc" report "$dir/one" "$dir/two" --out "$dir/bad.html" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "a bad run among several: exit $rc, want 2"
echo "$err" | grep -q "two/metrics.jsonl:2" || fail "error does not name two/metrics.jsonl:2: $err"
[ -e "$dir/bad.html" ] && fail "a failed comparison left a page"

cp "$dir/two/metrics.jsonl" "$dir/one/metrics.jsonl"
err=$("$ftc" report --run "$dir/one" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "bad metrics.jsonl exit $rc, want 2"
echo "$err" | grep -q "metrics.jsonl:2" || fail "error does not name metrics.jsonl:2: $err"
"$ftc" report --run "$dir/nope" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing run dir should exit 2"

if [ -z "${FTC_MINILM_DIR:-}" ] || [ ! -d "${FTC_MINILM_DIR:-}" ]; then
  echo "cli_report: ok (skipped the three MiniLM runs: FTC_MINILM_DIR not set or absent)"
  exit 0
fi
# three small runs on the FAQ data, 4 steps each, validation on 60 questions
head -n 60 "$src/examples/faq/test.jsonl" > "$dir/val.jsonl"
for m in head lora full; do
  "$ftc" train --model "$FTC_MINILM_DIR" --data "$src/examples/faq/train.jsonl" --val "$dir/val.jsonl" \
    --method $m --no-lp-ft --max-steps 4 --eval-every 2 --batch 8 --out "$dir/$m" --quiet >/dev/null \
    || fail "train --method $m"
  [ -f "$dir/$m/eval.json" ] && [ -f "$dir/$m/report.html" ] || fail "$m: no eval.json or report.html after training"
done
# the most confident mistakes: as many as there are (at most 20), most confident first, each what ftc classify
# says of its text (label and probability); ftc eval on the same data saves the same list
if command -v python3 >/dev/null 2>&1; then
  cp "$dir/head/eval.json" "$dir/train_eval.json"
  "$ftc" eval "$dir/head" --data "$dir/val.jsonl" >/dev/null || fail "ftc eval of the head run"
  python3 - "$dir" <<'EOF' || fail "worst examples in eval.json"
import json, sys
d = sys.argv[1]
e, t = json.load(open(f"{d}/head/eval.json")), json.load(open(f"{d}/train_eval.json"))
w = e["worst"]
mistakes = e["n_examples"] - sum(e["confusion"][i][i] for i in range(len(e["labels"])))
assert len(w) == min(20, mistakes) and mistakes > 0, (len(w), mistakes)
assert all(x["label"] != x["predicted"] and x["text"] for x in w)
assert all(a["prob"] >= b["prob"] for a, b in zip(w, w[1:]))
assert t["worst"] == w, "the end-of-train eval and ftc eval disagree"
assert "worst" not in e.get("base", {}), "the base column keeps no list"
with open(f"{d}/worst.jsonl", "w") as f:
    for x in w:
        f.write(json.dumps({"text": x["text"]}) + "\n")
EOF
  "$ftc" classify --model "$dir/head" --file "$dir/worst.jsonl" --jsonl --top 1 > "$dir/classified.jsonl" \
    || fail "ftc classify of the worst texts"
  python3 - "$dir" <<'EOF' || fail "worst examples do not match ftc classify"
import json, sys
d = sys.argv[1]
w = json.load(open(f"{d}/head/eval.json"))["worst"]
c = [json.loads(l) for l in open(f"{d}/classified.jsonl")]
assert len(c) == len(w)
for x, y in zip(w, c):
    assert y["label"] == x["predicted"] and abs(y["probability"] - x["prob"]) < 1e-4, (x, y)
EOF
  grep -q "<h2>Most confident mistakes</h2>" "$dir/head/report.html" || fail "the head run's page lists no mistakes"
fi
out=$("$ftc" report "$dir/head" "$dir/lora" "$dir/full" --out "$dir/cmp.html") || fail "report of three runs"
[ "$out" = "$dir/cmp.html" ] || fail "printed '$out', want $dir/cmp.html"
grep -q "<h1>ftc report: 3 runs</h1>" "$dir/cmp.html" || fail "three runs: title"
[ "$(grep -c '<polyline' "$dir/cmp.html")" -ge 12 ] || fail "three runs: curves missing"
grep -q "<tr><th>method</th><td>head</td><td>lora</td><td>full</td></tr>" "$dir/cmp.html" || fail "settings that differ"
grep -q "&#9733;" "$dir/cmp.html" || fail "no best value marked"
[ "$(grep -c 'class="best" stroke=' "$dir/cmp.html")" -ge 3 ] || fail "best checkpoints not marked"
# throughput spanning orders of magnitude (the head trains on cached features) is drawn on a log axis
ratio=$(cat "$dir"/head/metrics.jsonl "$dir"/lora/metrics.jsonl "$dir"/full/metrics.jsonl |
  grep -o '"tok_s":[0-9.e+]*' | cut -d: -f2 | awk '$1 > 0 { if (!lo || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
  END { printf "%.1f", hi / lo }')
if awk -v r="$ratio" 'BEGIN { exit !(r > 20) }'; then
  grep -q '<text x="90" y="20" class="title">Throughput (log scale)</text>' "$dir/cmp.html" ||
    fail "throughput spans ${ratio}x: no log scale"
else
  grep -q 'Throughput (log scale)' "$dir/cmp.html" && fail "throughput spans only ${ratio}x: log scale anyway"
fi
echo "throughput max/min over the three runs ${ratio}x: $(grep -q 'Throughput (log scale)' "$dir/cmp.html" && echo log || echo linear) axis"
# rendered by a browser: not blank, and the three runs' colours drawn
if command -v chromium >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
  FTC_SCREENSHOT_HEIGHT=2400 sh "$src/tools/screenshot_report.sh" "$dir/cmp.html" "$dir/cmp.png" >/dev/null \
    || fail "screenshot of the comparison"
  stats=$(python3 "$src/tools/png_stats.py" "$dir/cmp.png" '#1f77b4' '#d62728' '#2ca02c') || fail "png_stats"
  echo "$stats" | awk '{ exit !($1 == 1100 && $3 > 0.02 && $4 > 50 && $5 > 200 && $6 > 200 && $7 > 200) }' \
    || fail "the screenshot looks blank or lacks a run's colour: width height non-white colours blue red green = $stats"
else
  echo "note: chromium or python3 absent: the comparison was not rendered"
fi
echo "cli_report: ok"
