#!/usr/bin/env bash
# Relaycast load-test series: a release node pinned to one core, the load generator pinned to
# another, 50/100/200 viewers for DURATION each; JSON reports and SVG plots in OUT.
#
#   loadtest/bench.sh [OUT] [DURATION]        (defaults: target/loadtest, 30s)
# Env: SKIP_BUILD (set: use the existing release binaries), SERVER_CPU (0), LOAD_CPU (1), VIEWERS ("50 100 200"), THREADS (1), RID (unset: automatic layers),
#      NODE_ARGS (extra relaycast flags, e.g. "--no-archive" to measure forwarding alone)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/loadtest}")"
duration="${2:-30s}"
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
viewers="${VIEWERS:-50 100 200}"
threads="${THREADS:-1}"
mkdir -p "$out"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p relaycast -p relaycast-loadtest --manifest-path "$root/Cargo.toml"
bin="$root/target/release"
data="$(mktemp -d)"
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
# shellcheck source=loadtest/node.sh
. "$root/loadtest/node.sh"
# shellcheck disable=SC2086
start_node "$server_cpu" "$bin/relaycast" "$data" --publish-token bench ${NODE_ARGS:-}
url="$node_url"
reports=()
for n in $viewers; do
  suffix="${RID:+-rid$RID}"
  json="$out/relaycast-$n$suffix.json"
  taskset -c "$load_cpu" "$bin/relaycast-loadtest" --url "$url" --stream "bench$n" --token bench \
    --viewers "$n" --duration "$duration" --threads "$threads" --server-pid "$node_pid" \
    ${RID:+--rid "$RID"} --json "$json" > /dev/null
  reports+=("$json")
  jq -c '{viewers, with_frames: .viewers_with_frames, gbps: .egress.gbps, loss: .loss.ratio,
          p99: .latency_ms.p99, frame_p99: .frame_latency_ms.p99, join_p50: .join_ms.p50, server_cores: .server_cpu.cores,
          gbps_per_core: .efficiency.gbps_per_core, loadgen_cores: .loadgen_cpu.cores}' "$json" 2>/dev/null || true
done
"$bin/relaycast-loadtest" plot --out "$out" "${reports[@]}"
