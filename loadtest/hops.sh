#!/usr/bin/env bash
# Latency added per relay hop: three release nodes on loopback form the chain A → B → C, the
# synthetic publisher sends to A, and the same number of viewers watch at A (0 hops), at B
# (1 hop) and at C (2 hops) in turn. Latency is measured from the send timestamp
# each frame carries to its arrival at the viewer, so the difference between the runs is what
# the hops add.
#
#   loadtest/hops.sh [OUT] [DURATION]        (defaults: target/hops, 20s)
# Env: SKIP_BUILD (set: use the existing release binaries), BIN_DIR (binaries, default target/release), VIEWERS (5), RID (f)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/hops}")"
duration="${2:-20s}"
viewers="${VIEWERS:-5}"
rid="${RID:-f}"
mkdir -p "$out"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p relaycast -p relaycast-loadtest --manifest-path "$root/Cargo.toml"
bin="${BIN_DIR:-$root/target/release}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start NAME [flags...]: runs a node and waits for its http line; prints nothing.
start() {
  local name="$1"
  shift
  mkdir -p "$work/$name"
  RELAYCAST_LOG=warn "$bin/relaycast" --http 127.0.0.1:0 --media-port 0 --publish-token hops \
    --data-dir "$work/$name" --no-mdns --no-archive --p2p /ip4/127.0.0.1/tcp/0 "$@" \
    > "$work/$name/stdout" 2> "$work/$name/stderr" &
  pids+=("$!")
  for _ in $(seq 100); do
    grep -q '^  http: ' "$work/$name/stdout" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node $name did not start" >&2
  cat "$work/$name/stderr" >&2
  exit 1
}
http_of() { awk '/^  http: /{print $2}' "$work/$1/stdout"; }
p2p_of() { awk '/^  p2p: /{print $2; exit}' "$work/$1/stdout"; }

# A (the origin) lets only B relay from it, so a viewer at C makes C relay from B, which itself
# relays from A: the chain A → B → C.
start b
start c --bootstrap "$(p2p_of b)"
b_id="$(p2p_of b | sed 's|.*/p2p/||')"
start a --trusted-peer "$b_id" --bootstrap "$(p2p_of b)" --bootstrap "$(p2p_of c)"
A="$(http_of a)" B="$(http_of b)" C="$(http_of c)"

for hop in 0 1 2; do
  case "$hop" in 0) at="$A" ;; 1) at="$B" ;; 2) at="$C" ;; esac
  json="$out/hops-$hop.json"
  "$bin/relaycast-loadtest" --url "$A" --viewer-url "$at" --stream "hops$hop" --token hops \
    --viewers "$viewers" --duration "$duration" --rid "$rid" --json "$json" > /dev/null 2> "$work/run$hop.log" || {
      cat "$work/run$hop.log" >&2
      exit 1
    }
  jq -c --arg hop "$hop" '{hops: ($hop|tonumber), p50: .latency_ms.p50, p99: .latency_ms.p99, p999: .latency_ms.p999, frame_p99: .frame_latency_ms.p99,
         loss: .loss.ratio, join_p50: .join_ms.p50, viewers_with_frames}' "$json"
done
echo "egress datagrams / messages handed to the kernel (UDP GSO joins each peer's runs):" >&2
for n in a b c; do
  curl -s "$(http_of $n)/metrics" | awk -v n="$n" '/^relaycast_egress_packets_total/{p=$2} /^relaycast_egress_send_messages_total/{m=$2}
    END{printf "  %s: %d datagrams in %d messages\n", n, p, m}' >&2
done
echo "relay trees as C saw them:" >&2
curl -s "$C/api/topology" | jq -c '.streams[] | {stream, nodes: [.nodes[] | {depth, upstream: (.upstream // "" | .[-6:])}]}' >&2 || true
