# Shared by the CLI tests (tests/cli_*.sh source it; not a test itself): fail, and expect_rc, which runs a
# command with stdout and stderr in $T/out and $T/err (T: the test's temporary directory).
fail() { echo "FAIL: $*"; exit 1; }

expect_rc() { # expect_rc RC STDERR_SUBSTRING cmd...: exit status RC, and stderr containing the substring if given
  local want=$1 msg=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$T/out" "$T/err"; fail "'$*' exited $rc, want $want"; }
  [ -z "$msg" ] || grep -qF -- "$msg" "$T/err" || { cat "$T/err"; fail "'$*': stderr lacks '$msg'"; }
}
