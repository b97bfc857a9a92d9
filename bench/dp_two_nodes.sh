#!/bin/bash
# Two "nodes" on one machine (docs/distributed.md): rank 0 and rank 1 in two network namespaces joined by a veth
# pair, Open MPI over TCP between them (its rsh launcher given a stand-in for ssh that enters the other namespace),
# the link optionally shaped with tc (a token bucket: DP2_RATES="none 1gbit 200mbit"), against the same 2 ranks
# over shared memory. The run: MiniLM full fine-tuning, global batch 16 (a 91 MB gradient all-reduce per step).
# Needs root (ip netns, tc) and mpirun; cleans up its namespaces on exit.
#
#   bash bench/dp_two_nodes.sh [FTC_BIN]      (default build/ftc; DP_RESULTS=FILE appends the table, - prints only)
# Environment: DP2_RATES (default "none 1gbit"), DP_STEPS (default 4), DP_RUNS (default 2), BENCH_NOTES.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
ftc=$(cd "$(dirname "${1:-$root/build/ftc}")" && pwd)/$(basename "${1:-$root/build/ftc}")
rates=${DP2_RATES:-none 1gbit}
steps=${DP_STEPS:-4}
runs=${DP_RUNS:-2}
results=${DP_RESULTS:-$root/bench/RESULTS.md}
[ "$(id -u)" = 0 ] || { echo "dp_two_nodes: needs root (ip netns, tc)"; exit 1; }
command -v mpirun >/dev/null || { echo "dp_two_nodes: mpirun not found (make deps)"; exit 1; }
minilm=$(sh "$root/scripts/find-minilm.sh")
[ -n "$minilm" ] || { echo "dp_two_nodes: MiniLM not installed (make deps)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dp_two_nodes.XXXXXX")
ns0=ftcdp$$a ns1=ftcdp$$b ip0=10.213.0.1 ip1=10.213.0.2
cleanup() { ip netns del "$ns0" 2>/dev/null || true; ip netns del "$ns1" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
export OMPI_MCA_orte_tmpdir_base="$tmp" # Open MPI's session directory: its own, not the one other mpiruns share
ip netns add "$ns0"; ip netns add "$ns1"
ip link add "${ns0}v" type veth peer name "${ns1}v"
ip link set "${ns0}v" netns "$ns0"; ip link set "${ns1}v" netns "$ns1"
ip -n "$ns0" addr add "$ip0/24" dev "${ns0}v"; ip -n "$ns1" addr add "$ip1/24" dev "${ns1}v"
for n in "$ns0" "$ns1"; do ip -n "$n" link set lo up; ip -n "$n" link set "${n}v" up; done
# Open MPI starts the second node's daemon through "ssh HOST COMMAND": here, the command in that namespace
cat >"$tmp/ssh" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift;; *) break;; esac; done
host=\$1; shift
case "\$host" in $ip0) ns=$ns0;; $ip1) ns=$ns1;; *) echo "dp_two_nodes ssh: unknown host \$host" >&2; exit 255;; esac
exec ip netns exec \$ns /bin/sh -c "\$*"
EOF
chmod +x "$tmp/ssh"
printf '%s slots=1\n%s slots=1\n' "$ip0" "$ip1" >"$tmp/hosts"
awk 'BEGIN { srand(7); for (i = 0; i < 256; i++) { c = i % 4; n = 24 + int(rand() * 40); s = "101";
  for (t = 0; t < n; t++) s = s ", " (2000 + int(rand() * 20000)); printf "{\"input_ids\": [%s, 102], \"label\": %d}\n", s, c } }' \
  >"$tmp/cls.jsonl"
ARGS=(--model "$minilm" --task classify --data "$tmp/cls.jsonl" --batch 16 --lr 5e-5 --method full --no-lp-ft
      --max-steps "$steps" --warmup 0 --log-every 1 --save-only-model --quiet)
. "$root/bench/dp_common.sh" # figures, median
load0=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
measure() { # label, then the launch command before "ftc train"
  local label=$1; shift
  : >"$tmp/t"; : >"$tmp/c"; : >"$tmp/w"
  for r in $(seq 1 "$runs"); do
    rm -rf "$tmp/run"
    FTC_THREADS=1 "$@" "$ftc" train "${ARGS[@]}" --out "$tmp/run" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    read -r t c w < <(figures "$tmp/run/metrics.jsonl")
    echo "$label run $r: $t tok/s, all-reduce $c s/step, wait $w s/step" >&2
    echo "$t" >>"$tmp/t"; echo "$c" >>"$tmp/c"; echo "$w" >>"$tmp/w"
  done
  rows+=("$(printf '| %s | %.0f | %.3f s | %.3f s | %d |' "$label" "$(median <"$tmp/t")" "$(median <"$tmp/c")" \
            "$(median <"$tmp/w")" "$runs")")
}
measure "2 ranks, one node: shared memory" mpirun -np 2 --bind-to core --allow-run-as-root
for rate in $rates; do
  for n in "$ns0" "$ns1"; do
    ip netns exec "$n" tc qdisc del dev "${n}v" root 2>/dev/null || true
    [ "$rate" = none ] || ip netns exec "$n" tc qdisc add dev "${n}v" root tbf rate "$rate" burst 1mb latency 100ms
  done
  measure "2 nodes (network namespaces), TCP over veth, link $([ "$rate" = none ] && echo unshaped || echo "shaped to $rate")" \
    ip netns exec "$ns0" mpirun -np 2 --hostfile "$tmp/hosts" --allow-run-as-root --mca plm_rsh_agent "$tmp/ssh" \
    --mca btl tcp,self --mca btl_tcp_if_include "$ip0/24" --mca oob_tcp_if_include "$ip0/24" -x FTC_THREADS
done
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo
  echo "### Data parallel over a network: two \"nodes\" in network namespaces ($(date -u +%Y-%m-%d), $commit)"
  echo
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1) (Zen 3, AVX2, no AVX-512), 2 cores for both \"nodes\". Load average at start: $load0. ${BENCH_NOTES:-The machine is shared with other work: figures are noisy.}"
  echo "Command: \`bash bench/dp_two_nodes.sh\` (DP2_RATES=\"$rates\", DP_STEPS=$steps, DP_RUNS=$runs). MiniLM full, global batch 16, 1 thread per rank, 91 MB gradient all-reduce per step."
  echo
  echo "| launch | tok/s | all-reduce per step | waiting for the other rank per step | runs |"
  echo "|---|---|---|---|---|"
  for r in "${rows[@]}"; do echo "$r"; done
} >"$tmp/table"
cat "$tmp/table"
[ "$results" = - ] || cat "$tmp/table" >>"$results"
