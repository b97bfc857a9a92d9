# Shared by the CLI tests (tests/cli_*.sh source it; not a test itself): fail, and expect_rc, which runs a
# command with stdout and stderr in $T/out and $T/err (T: the test's temporary directory).
fail() { echo "FAIL: $*"; exit 1; }

expect_rc() { # expect_rc RC STDERR_SUBSTRING cmd...: exit status RC, and stderr containing the substring if given
  local want=$1 msg=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$T/out" "$T/err"; fail "'$*' exited $rc, want $want"; }
  [ -z "$msg" ] || grep -qF -- "$msg" "$T/err" || { cat "$T/err"; fail "'$*': stderr lacks '$msg'"; }
}

# need_stories260k: the tiny real Llama (../shared/data/models/stories260K-hf) most training tests use, in $STORIES;
# without the shared data the test ends here with a SKIP line and exit 0.
need_stories260k() {
  STORIES=${FTC_SHARED_DATA:-../shared/data}/models/stories260K-hf
  [ -f "$STORIES/model.safetensors" ] || { echo "SKIP: $STORIES not found"; exit 0; }
}

# story_texts N FILE: N plain-text lines ({"text"}); story_pairs N FILE: N prompt/completion lines (loss on the
# completion only). Small causal-lm data sets for stories260K runs.
story_texts() {
  local i
  for i in $(seq 1 "$1"); do
    echo "{\"text\": \"Once upon a time there was a little girl named Lily. She liked to play in the park number $i.\"}"
  done >"$2"
}
story_pairs() {
  local i
  for i in $(seq 1 "$1"); do
    printf '{"prompt": "Once upon a time %d", "completion": " there was a girl named Lily."}\n' "$i"
  done >"$2"
}
