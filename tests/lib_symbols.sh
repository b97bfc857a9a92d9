#!/usr/bin/env bash
# Every symbol libftc exports starts with ftc_, so a program that links libftc next to other C code
# (llm.c-style layernorm_forward, its own P()/G(), ...) does not collide with us.
# Usage: lib_symbols.sh path/to/libftc.a   (ctest passes the built library)
# Lists the archive's global, defined symbols with nm; helpers shared between our own files are named
# ftc_<area>_... too, file-local ones are static. Sanitizer/coverage instrumentation symbols are the
# compiler's, not ours, and are skipped.
set -u
lib=${1:?usage: lib_symbols.sh libftc.a}
[ -f "$lib" ] || { echo "FAIL: no library at $lib"; exit 1; }
syms=$(nm -g --defined-only "$lib") || { echo "FAIL: nm $lib"; exit 1; }
# nm prints "addr type name" for symbols and "file.o:" headers; keep the names.
names=$(printf '%s\n' "$syms" | awk 'NF == 3 { print $3 }' | sort -u)
n=$(printf '%s\n' "$names" | grep -c '^ftc_')
# A library that exports nothing would pass the check below vacuously.
[ "$n" -gt 100 ] || { echo "FAIL: only $n ftc_ symbols found in $lib: is nm reading the right file?"; exit 1; }
bad=$(printf '%s\n' "$names" | grep -v '^ftc_' | grep -Ev '^(__asan_|__odr_asan_gen_ftc_|__sancov_|__ubsan_)')
if [ -n "$bad" ]; then
    echo "FAIL: $lib exports symbols without the ftc_ prefix (make them static, or name them ftc_...):"
    printf '%s\n' "$bad" | while read -r s; do
        printf '  %s  (%s)\n' "$s" "$(printf '%s\n' "$syms" | awk -v s="$s" '/:$/ { f = substr($1, 1, length($1) - 1) } NF == 3 && $3 == s { print f; exit }')"
    done
    exit 1
fi
echo "ok: $n exported symbols, all ftc_"
