#!/usr/bin/env bash
# Glass-to-glass latency down a relay chain over shaped links. Four nodes O → N1 → N2 → N3, each
# in a network namespace of its own, hang off tests/e2e/shaped-switch.py by a link each; every
# node's link is shaped like netem's `delay 20ms loss 1%` on what the node sends (node to node:
# 20 ms each way, 40 ms round trip, 1 % loss each way; node to clients: 20 ms, 1 %). The load
# tool runs in a "clients" namespace on an unshaped link: its synthetic publisher sends to O and
# its viewers watch at O (depth 0), then at N3 (depth 3). Latency is from the send timestamp
# each frame carries to its arrival at the viewer (same clock), so it holds the shaping: one
# shaped hop at depth 0 (O → viewer), four at depth 3 (O → N1 → N2 → N3 → viewer).
# The chain is forced with --trusted-peer: O serves only N1 and N1 deals only with O and N2. The
# load tool's unmeasured feeder viewers join at N1 (which relays from O), then at N2 (from N1,
# as O refuses it), then the measured viewers at N3 (from N2, as O and N1 refuse it).
#
#   loadtest/tree-netem.sh [OUT] [DURATION]        (defaults: target/tree-netem, 20s)
# Env: BIN_DIR (relaycast and relaycast-loadtest, default target/debug), VIEWERS (5), RID (f)
# Needs root (ip netns, /dev/net/tun), python3, curl and jq. Uses 10.238.N.0/24 (N from the pid).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/tree-netem}")"
duration="${2:-20s}"
viewers="${VIEWERS:-5}"
rid="${RID:-f}"
bin="${BIN_DIR:-$root/target/debug}"
mkdir -p "$out"
id=$(( $$ % 10000 ))
net="10.238.$(( 10 + $$ % 200 ))"
clients="rtlC$id"
work="$(mktemp -d)"
pids=()
sw_pid=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$sw_pid" ]; then kill "$sw_pid" 2>/dev/null || true; wait "$sw_pid" 2>/dev/null || true; fi
  for i in 0 1 2 3; do ip netns del "rtl${i}n$id" 2>/dev/null || true; done
  ip netns del "$clients" 2>/dev/null || true
  for i in 0 1 2 3; do cat "$work/n$i/stdout" "$work/n$i/stderr" > "$out/n$i.log" 2>/dev/null || true; done
  cp "$work"/run*.log "$out/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The switch (the wire, at a real-time priority so its delays hold under load): four shaped ports (nodes), one unshaped (clients), one unshaped (here, for curl).
ports='['
for i in 0 1 2 3; do ports+="{\"name\":\"rtl${id}t$i\",\"delay_ms\":20,\"loss\":0.01},"; done
ports+="{\"name\":\"rtl${id}tc\"},{\"name\":\"rtl${id}th\"}]"
chrt -f 10 python3 "$root/tests/e2e/shaped-switch.py" "$ports" > "$work/switch.log" 2>&1 &
sw_pid=$!
for _ in $(seq 100); do grep -q ready "$work/switch.log" && break; sleep 0.1; done
grep -q ready "$work/switch.log" || { cat "$work/switch.log" >&2; exit 1; }
join() { # join NS TAP IP
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip link set "$2" netns "$1"
  ip -n "$1" link set "$2" name eth0
  ip -n "$1" addr add "$3/24" dev eth0
  ip -n "$1" link set eth0 up
}
for i in 0 1 2 3; do join "rtl${i}n$id" "rtl${id}t$i" "$net.$(( 10 + i ))"; done
join "$clients" "rtl${id}tc" "$net.2"
ip addr add "$net.3/24" dev "rtl${id}th"
ip link set "rtl${id}th" up

# start I [flags...]: node I in its namespace; waits for its http line.
start() {
  local i="$1"
  shift
  mkdir -p "$work/n$i"
  ip netns exec "rtl${i}n$id" "$bin/relaycast" --http "$net.$(( 10 + i )):0" --media-port 0 --publish-token tree \
    --data-dir "$work/n$i" --no-mdns --no-archive --no-turn --p2p "/ip4/$net.$(( 10 + i ))/tcp/0" "$@" \
    > "$work/n$i/stdout" 2> "$work/n$i/stderr" &
  pids+=("$!")
  for _ in $(seq 300); do
    grep -q '^  http: ' "$work/n$i/stdout" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node $i did not start" >&2
  cat "$work/n$i/stderr" >&2
  exit 1
}
http_of() { awk '/^  http: /{print $2}' "$work/n$1/stdout" | tail -1; }
p2p_of() { awk '/^  p2p: /{print $2}' "$work/n$1/stdout" | tail -1; }
id_of() { p2p_of "$1" | sed 's|.*/p2p/||'; }

# First start: each node creates its identity in its data directory; the chain needs the ids.
for i in 0 1 2 3; do start "$i"; done
ids=()
for i in 0 1 2 3; do ids+=("$(id_of "$i")"); done
for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
pids=()
for i in 0 1 2 3; do : > "$work/n$i/stdout"; done
start 0 --trusted-peer "${ids[1]}"
start 1 --trusted-peer "${ids[0]},${ids[2]}" --bootstrap "$(p2p_of 0)"
start 2 --bootstrap "$(p2p_of 0)" --bootstrap "$(p2p_of 1)"
start 3 --bootstrap "$(p2p_of 0)" --bootstrap "$(p2p_of 2)"
O="$(http_of 0)" N3="$(http_of 3)"
echo "nodes: O $O, N1 $(http_of 1), N2 $(http_of 2), N3 $N3; duration $duration, $viewers viewers, layer $rid" >&2

for depth in 0 3; do
  # Depth 3: one unmeasured viewer at N1, then at N2, grows the chain down to N3 first.
  case "$depth" in 0) at="$O" feeders=() ;; 3) at="$N3" feeders=(--feeder-url "$(http_of 1)" --feeder-url "$(http_of 2)") ;; esac
  json="$out/depth-$depth.json"
  # While the run is on, the watched node's view of the stream's tree, every 2 s.
  ( while sleep 2; do
      curl -s --max-time 5 "$at/api/topology" | jq -c --arg s "tree$depth" '.streams[] | select(.stream == $s) | [.nodes[] | {depth, peer: .peer_id[-6:], path: ((.path // []) | map(.[-6:]))}]' 2>/dev/null || true
    done > "$work/topo$depth" ) &
  poll=$!
  ip netns exec "$clients" "$bin/relaycast-loadtest" --url "$O" --viewer-url "$at" --stream "tree$depth" --token tree \
    --bind-ip "$net.2" --viewers "$viewers" --duration "$duration" --rid "$rid" "${feeders[@]}" --json "$json" > /dev/null 2> "$work/run$depth.log" || {
      kill "$poll" 2>/dev/null || true
      cat "$work/run$depth.log" >&2
      exit 1
    }
  kill "$poll" 2>/dev/null || true
  wait "$poll" 2>/dev/null || true
  jq -c --arg depth "$depth" '{depth: ($depth|tonumber), p50: .latency_ms.p50, p99: .latency_ms.p99, p999: .latency_ms.p999,
         frame_p50: .frame_latency_ms.p50, frame_p99: .frame_latency_ms.p99, loss: .loss.ratio, join_p50: .join_ms.p50, viewers_with_frames}' "$json"
  echo "tree$depth's tree as the watched node saw it during the run (last of $(grep -c . "$work/topo$depth" || true) snapshots):" >&2
  grep . "$work/topo$depth" | tail -1 >&2 || true
done
echo "switch:" >&2
kill "$sw_pid"; wait "$sw_pid" 2>/dev/null || true; sw_pid=""
cat "$work/switch.log" >&2
