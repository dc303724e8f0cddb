#!/usr/bin/env bash
# Where a viewer's memory goes: runs a node under heaptrack twice, with LOW and HIGH viewers of
# one stream, and prints the heap each owner holds at the peak, per viewer (the difference of the
# two runs divided by the difference of viewers, so fixed costs cancel out).
#
#   loadtest/heap-per-viewer.sh [BIN] [OUT]    (BIN: target/release/relaycast; OUT: target/heap)
# Env: LOW (20), HIGH (60), DURATION (15s), RID (f), LOADTEST (target/release/relaycast-loadtest),
#      NODE_ARGS (--no-archive)
# Needs heaptrack (Debian package `heaptrack`). Heap only: RSS adds the allocator's slack on top
# (the load test's JSON reports RSS per viewer).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$root/target/release/relaycast}")"
out="$(realpath -m "${2:-$root/target/heap}")"
low="${LOW:-20}"
high="${HIGH:-60}"
duration="${DURATION:-15s}"
rid="${RID-f}"
node_args="${NODE_ARGS---no-archive}"
loadtest="${LOADTEST:-$root/target/release/relaycast-loadtest}"
command -v heaptrack > /dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)" >&2; exit 1; }
mkdir -p "$out"
node_pid=""
data=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null; [ -n "$data" ] && rm -rf "$data"; }
trap cleanup EXIT

run() {
  local viewers="$1" port
  data="$(mktemp -d)"
  port=$((18400 + viewers))
  # shellcheck disable=SC2086
  RELAYCAST_LOG=warn heaptrack -o "$out/node-$viewers" "$bin" --http "127.0.0.1:$port" --media-port 0 \
    --data-dir "$data" --workers 1 --publish-token heap --no-mdns $node_args > "$data/stdout" 2>&1 &
  node_pid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/api/node" > /dev/null && break
    sleep 0.1
  done
  "$loadtest" --url "http://127.0.0.1:$port" --stream heap --token heap --viewers "$viewers" \
    --duration "$duration" ${rid:+--rid "$rid"} --json "$out/loadtest-$viewers.json" > "$out/loadtest-$viewers.log" 2>&1
  # heaptrack writes its file when the node exits; heaptrack itself is a script whose child is
  # the node, so the node is stopped by its command line.
  pkill -INT -f -- "$bin --http 127.0.0.1:$port" || true
  wait "$node_pid" || true
  node_pid=""
  rm -rf "$data"
  data=""
  heaptrack_print -f "$out/node-$viewers.zst" --flamegraph-cost-type peak -F "$out/stacks-$viewers.txt" > /dev/null 2>&1
}

run "$low"
run "$high"
python3 "$root/loadtest/heap_owners.py" "$out/stacks-$low.txt" "$low" "$out/stacks-$high.txt" "$high"
