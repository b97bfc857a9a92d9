# Shared by bench/dp_bench.sh and bench/dp_two_nodes.sh (sourced, bash).

# metrics.jsonl's last step line -> "tokens/s  all-reduce s per step  wait s per step" (0 where a run has no dp)
figures() {
  python3 - "$1" <<'PY'
import json, sys
last = None
for line in open(sys.argv[1]):
    o = json.loads(line)
    if "tok_s" in o: last = o
print(last["tok_s"], last.get("dp_comm_s", 0) / last["step"], last.get("dp_wait_s", 0) / last["step"])
PY
}

# the median of the numbers on standard input, one a line
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
