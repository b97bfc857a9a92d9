#!/bin/bash
# ftc report as a user runs it: writes the page and prints its path; usage errors exit 1,
# bad input exits 2 with the file and line named.
set -u
ftc=${FTC_BIN:-build/ftc}
src=${FTC_SOURCE_DIR:-.}
dir=$(mktemp -d /tmp/ftc_cli_report_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$ftc" report --help | grep -q "Usage: ftc report RUNDIR" || fail "--help"
"$ftc" report >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing --run should exit 1"
"$ftc" report --run "$dir" --bogus >/dev/null 2>&1; [ $? -eq 1 ] || fail "unknown flag should exit 1"

cp "$src"/tests/fixtures/report_run_classify/* "$dir"/
out=$("$ftc" report --run "$dir") || fail "report on the fixture run failed"
[ "$out" = "$dir/report.html" ] || fail "printed '$out', want the report path"
grep -q "<h2>Confusion matrix</h2>" "$dir/report.html" || fail "no confusion matrix"

printf '{"step": 1, "loss": 2.0}\nnot json\n' > "$dir/metrics.jsonl"
err=$("$ftc" report --run "$dir" 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "bad metrics.jsonl exit $rc, want 2"
echo "$err" | grep -q "metrics.jsonl:2" || fail "error does not name metrics.jsonl:2: $err"

"$ftc" report --run "$dir/nope" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing run dir should exit 2"
echo "cli_report: ok"
