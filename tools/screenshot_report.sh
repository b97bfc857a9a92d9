#!/bin/sh
# Checks that a report renders: regenerates a run's report.html with `ftc report` (or takes a page ftc report
# wrote, e.g. a comparison of several runs) and takes a full-page screenshot with headless Chromium (Debian
# package `chromium`: sh scripts/install-deps.sh --report-check).
#
#   tools/screenshot_report.sh [RUNDIR | PAGE.html] [OUT.png] [FTC_BIN]
#
# Without RUNDIR it renders a copy of the synthetic classification run in
# tests/fixtures/report_run_classify (made by tools/make_report_fixtures.py).
# OUT defaults to RUNDIR/report.png (PAGE.png), FTC_BIN to build/ftc. Look at the PNG, or count its colours with
# tools/png_stats.py (tests/cli_report.sh does): the charts, the tables and the heat map must be visible; a blank
# or error page means the HTML or SVG is broken.
# Chromium is not needed to build, test or use ftc; only this check uses it.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
run=$1
out=$2
ftc=${3:-$here/build/ftc}
if [ -z "$run" ]; then
  run=$(mktemp -d /tmp/ftc_report_XXXXXX)
  cp "$here"/tests/fixtures/report_run_classify/* "$run"/
fi
command -v chromium >/dev/null 2>&1 || { echo "screenshot_report: chromium not installed (sh scripts/install-deps.sh --report-check)" >&2; exit 2; }
case $run in
  *.html)
    [ -f "$run" ] || { echo "screenshot_report: $run: no such file" >&2; exit 2; }
    [ -n "$out" ] || out=${run%.html}.png
    html=$(cd "$(dirname "$run")" && pwd)/$(basename "$run") ;;
  *)
    [ -n "$out" ] || out=$run/report.png
    [ -x "$ftc" ] || { echo "screenshot_report: $ftc not built (make)" >&2; exit 2; }
    "$ftc" report "$run" >/dev/null
    html=$(cd "$run" && pwd)/report.html ;;
esac
# Tall window so the whole page (charts, tables, heat map) fits in one image; a throwaway profile
# so nothing touches the user's; --no-sandbox because CI and these machines run as root.
profile=$(mktemp -d /tmp/ftc_chromium_XXXXXX)
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1100,${FTC_SCREENSHOT_HEIGHT:-3000} --screenshot="$out" "file://$html" >/dev/null 2>&1
rm -rf "$profile"
[ -s "$out" ] || { echo "screenshot_report: no screenshot written" >&2; exit 3; }
echo "$out"
