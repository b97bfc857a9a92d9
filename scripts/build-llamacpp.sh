#!/bin/sh
# Builds llama.cpp, the peer ftc's GGUF export and decode speed are checked against, from a pinned source:
# the llama.cpp tree vendored in the PyPI sdist of llama-cpp-python (version and sha256 below).
# CPU only, no curl/openssl, into a cache outside the repo. Nothing in ftc's build or `make test` needs it.
#
#   sh scripts/build-llamacpp.sh           download (once), build (once), print the install dir
#   sh scripts/build-llamacpp.sh --print   print the install dir if it is built, else nothing (exit 1)
#
# Environment: FTC_LLAMACPP_DIR (default /work/cache/llama.cpp-<version>), JOBS (default 2).
# Result, under $FTC_LLAMACPP_DIR:
#   bin/llama-completion   the non-interactive CLI (what `llama-cli -no-cnv` was before llama.cpp split it)
#   bin/llama-simple bin/llama-bench bin/llama-quantize bin/llama-tokenize
#   src/                   the llama.cpp source tree, with convert_hf_to_gguf.py and gguf-py/ beside it
#   STAMP                  version + sha256 of the sdist, written last (its presence means the build finished)
set -e
LCP_PY_VERSION=0.3.36
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LCP_URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$LCP_PY_VERSION.tar.gz
DIR=${FTC_LLAMACPP_DIR:-/work/cache/llama.cpp-$LCP_PY_VERSION}
JOBS=${JOBS:-2}
TARGETS="llama-completion llama-simple llama-bench llama-quantize llama-tokenize"

if [ -f "$DIR/STAMP" ] && grep -q "$LCP_SHA256" "$DIR/STAMP"; then
  echo "$DIR"; exit 0
fi
[ "$1" = "--print" ] && exit 1

mkdir -p "$DIR"
tgz="$DIR/llama_cpp_python-$LCP_PY_VERSION.tar.gz"
if [ ! -f "$tgz" ] || ! echo "$LCP_SHA256  $tgz" | sha256sum -c --status; then
  echo "build-llamacpp: downloading llama-cpp-python $LCP_PY_VERSION sdist" >&2
  curl -fsSL -o "$tgz.tmp" "$LCP_URL"
  echo "$LCP_SHA256  $tgz.tmp" | sha256sum -c --status || { echo "build-llamacpp: sha256 mismatch for $LCP_URL" >&2; exit 1; }
  mv "$tgz.tmp" "$tgz"
fi
if [ ! -f "$DIR/src/CMakeLists.txt" ]; then
  rm -rf "$DIR/src" "$DIR/src.tmp"; mkdir -p "$DIR/src.tmp"
  tar xzf "$tgz" -C "$DIR/src.tmp" --strip-components=3 "llama_cpp_python-$LCP_PY_VERSION/vendor/llama.cpp"
  mv "$DIR/src.tmp" "$DIR/src"
fi

echo "build-llamacpp: building $TARGETS with -j$JOBS (nice 10) into $DIR/build" >&2
nice -n 10 cmake -S "$DIR/src" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON -DGGML_NATIVE=ON >&2
# shellcheck disable=SC2086
nice -n 10 cmake --build "$DIR/build" -j "$JOBS" --target $TARGETS >&2
mkdir -p "$DIR/bin"
for t in $TARGETS; do cp "$DIR/build/bin/$t" "$DIR/bin/$t"; done
printf 'llama-cpp-python %s sdist sha256 %s\n' "$LCP_PY_VERSION" "$LCP_SHA256" > "$DIR/STAMP"
echo "$DIR"
