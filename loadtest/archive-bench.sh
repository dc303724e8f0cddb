#!/usr/bin/env bash
# Does archiving slow forwarding? The same load (synthetic 3-layer publisher, VIEWERS viewers)
# against a release node with the archive on, then with --no-archive, alternating ROUNDS times;
# prints forwarding latency and node CPU for each run, and the archive's segment close → CID
# announced times.
#
#   loadtest/archive-bench.sh [OUT] [DURATION]        (defaults: target/archive-bench, 20s)
# Env: SKIP_BUILD (set: use the existing release binaries), BIN_DIR (default target/release),
#      VIEWERS (20), ROUNDS (2), RID (unset: automatic layers), SERVER_CPU (0), LOAD_CPU (1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/archive-bench}")"
duration="${2:-20s}"
viewers="${VIEWERS:-20}"
rounds="${ROUNDS:-2}"
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
mkdir -p "$out"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p relaycast -p relaycast-loadtest --manifest-path "$root/Cargo.toml"
bin="${BIN_DIR:-$root/target/release}"
work="$(mktemp -d)"
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=loadtest/node.sh
. "$root/loadtest/node.sh"

# run MODE ROUND: one node, one load run; MODE is "on" or "off".
run() {
  local mode="$1" round="$2" data="$work/$1-$2"
  mkdir -p "$data"
  local flags=()
  [ "$mode" = off ] && flags+=(--no-archive)
  start_node "$server_cpu" "$bin/relaycast" "$data" --publish-token bench --no-mdns "${flags[@]}"
  local url="$node_url"
  local json="$out/archive-$mode-$round.json"
  taskset -c "$load_cpu" "$bin/relaycast-loadtest" --url "$url" --stream bench --token bench \
    --viewers "$viewers" --duration "$duration" --server-pid "$node_pid" ${RID:+--rid "$RID"} --json "$json" > /dev/null 2>&1
  jq -c --arg mode "$mode" '{archive: $mode, p50: .latency_ms.p50, p99: .latency_ms.p99, p999: .latency_ms.p999, frame_p99: .frame_latency_ms.p99,
      loss: .loss.ratio, server_cores: .server_cpu.cores, gbps: .egress.gbps}' "$json"
  if [ "$mode" = on ]; then
    # The publisher has left; wait (bounded) for the recording to close.
    for _ in $(seq 100); do
      curl -sf "$url/api/streams/bench/archive" | jq -e '.vod' > /dev/null 2>&1 && break
      sleep 0.1
    done
    curl -sf "$url/api/streams/bench/archive" | jq -c '{segments: (.segments|length), vod, announce_ms}'
  fi
  kill "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
}

for r in $(seq "$rounds"); do
  run on "$r"
  run off "$r"
done
