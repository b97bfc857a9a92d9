#!/bin/sh
# Tokenizer encoding speed, single thread: ftc (bench/tokenizer_bench.c) against HF tokenizers
# (bench/tokenizer_peer.py) on the same text and chunks, alternating TOK_RUNS times; appends a table to
# bench/RESULTS.md.   sh bench/run_tokenizer.sh [BUILD_DIR]
# Texts: English = Banking77 train+test questions x3 (2.3 MB); multilingual = the tokenizer test corpus x4.
# Environment: TOK_RUNS (default 3), TOK_REPS (timings per run, default 3), PYTHON (default python3),
#              BENCH_RESULTS (default bench/RESULTS.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
runs=${TOK_RUNS:-3}
reps=${TOK_REPS:-3}
py=${PYTHON:-python3}
results=${BENCH_RESULTS:-$here/RESULTS.md}
data=$root/../shared/data
cmake --build "$build" --target tokenizer_bench >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" - "$data" "$root/tests/fixtures/tokenizer_corpus.jsonl" "$tmp" <<'PY'
import csv, json, sys
data, corpus, tmp = sys.argv[1:4]
rows = [r[0] for f in ["train.csv", "test.csv"] for r in list(csv.reader(open(f"{data}/banking77/{f}", encoding="utf-8")))[1:]]
open(f"{tmp}/english.txt", "w", encoding="utf-8").write(("\n".join(rows) + "\n") * 3)
lines = [json.loads(l).replace("\n", " ") for l in open(corpus, encoding="utf-8")]
open(f"{tmp}/multilingual.txt", "w", encoding="utf-8").write(("\n".join(lines) + "\n") * 4)
PY
minilm=$(sh "$root/scripts/find-minilm.sh" 2>/dev/null || true)
rows=""
for tk in gpt2 bert-base-uncased llama2; do
  dir=$data/tokenizers/$tk
  for text in english multilingual; do
    i=1
    : >"$tmp/ours"; : >"$tmp/hf"
    while [ "$i" -le "$runs" ]; do
      echo "tokenizer bench: $tk $text run $i/$runs" >&2
      "$build/tokenizer_bench" --model "$dir" --text "$tmp/$text.txt" --reps "$reps" >>"$tmp/ours"
      "$py" "$here/tokenizer_peer.py" --model "$dir" --text "$tmp/$text.txt" --reps "$reps" >>"$tmp/hf"
      i=$((i + 1))
    done
    row=$(awk -v tk="$tk" -v text="$text" '
      function med(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
                                     return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      FNR == 1 { f++ }
      f == 1 { o[++no] = $1; tok_o = $2; bytes = $3 }
      f == 2 { h[++nh] = $1; tok_h = $2 }
      END { mo = med(o, no); mh = med(h, nh)
            printf "| %s | %s | %.1f | %.2f | %.2f | %.2f | %s |\n", tk, text, bytes / 1e6, mo, mh, mo / mh, (tok_o == tok_h ? "yes" : "NO: " tok_o " vs " tok_h) }' "$tmp/ours" "$tmp/hf")
    rows="$rows$row
"
  done
done
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit+uncommitted"
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
hfver=$("$py" -c 'import tokenizers; print(tokenizers.__version__)')
[ -f "$results" ] || printf '# Benchmark results\n\nNewest last.\n' >"$results"
{
  printf '\n## Tokenizer encoding MB/s, single thread, %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf -- '- commit %s; %s, %s cores; HF tokenizers %s (RAYON_NUM_THREADS=1, encode per chunk)\n' "$commit" "$model" "$(nproc)" "$hfver"
  printf -- '- command: `TOK_RUNS=%s TOK_REPS=%s sh bench/run_tokenizer.sh` (from the repository root)\n' "$runs" "$reps"
  printf -- '- text cut into chunks of <= 4 KiB at line ends, encoded without special tokens; cell = median of %s alternating runs, each the median of %s timings; load time excluded\n' "$runs" "$reps"
  printf -- '- machine shared with other jobs (load average %s); trust ratios more than absolute numbers\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '| tokenizer | text | MB | ftc MB/s | HF MB/s | ftc/HF | same token count |\n| --- | --- | --- | --- | --- | --- | --- |\n'
  printf '%s' "$rows"
} >>"$results"
printf '%s' "$rows"
echo "tokenizer bench: appended to $results" >&2
