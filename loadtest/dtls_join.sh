#!/usr/bin/env bash
# The node's CPU and time per viewer join with each DTLS backend (--dtls-backend dimpl|openssl),
# alternating on one binary: on a shared, noisy machine only runs taken close together compare.
#
#   loadtest/dtls_join.sh [OUT]          (OUT: where the JSON reports go, default target/dtls-join)
# Env: VIEWERS (100), ROUNDS (3), RID (q: the 150 kbit/s layer, so forwarding costs little beside
#      the joins), SERVER_CPU (0), LOAD_CPU (1), RELAYCAST (target/release/relaycast),
#      LOADTEST (target/release/relaycast-loadtest)
# Each run starts a node (one worker, no archive), reads its CPU time from /proc, lets VIEWERS
# viewers join (16 at a time, the tool's batch) and watch for 2 s, reads its CPU again and prints
# one JSON line: the node's CPU ms per join (everything from before the first WHEP POST to the end
# of the 2 s window, divided by the viewers: an upper bound that includes the forwarding), join
# p50/p90 and its ICE + DTLS part (`connected`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/dtls-join}")"
viewers="${VIEWERS:-100}"
rounds="${ROUNDS:-3}"
rid="${RID-q}"
relaycast="${RELAYCAST:-$root/target/release/relaycast}"
loadtest="${LOADTEST:-$root/target/release/relaycast-loadtest}"
mkdir -p "$out"
data=""
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null; [ -n "$data" ] && rm -rf "$data"; }
trap cleanup EXIT
# shellcheck source=loadtest/node.sh
. "$root/loadtest/node.sh"
ticks="$(getconf CLK_TCK)"
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq "$rounds"); do
  for backend in dimpl openssl; do
    name="$backend-$r"
    data="$(mktemp -d)"
    start_node "${SERVER_CPU:-0}" "$relaycast" "$data" --publish-token dj --no-mdns --no-archive --dtls-backend "$backend"
    before="$(cpu_ticks "$node_pid")"
    taskset -c "${LOAD_CPU:-1}" "$loadtest" --url "$node_url" --stream dj --token dj --viewers "$viewers" \
      --duration 2s --warmup 0s ${rid:+--rid "$rid"} --server-pid "$node_pid" --json "$out/$name.json" \
      > /dev/null 2> "$out/$name.log"
    after="$(cpu_ticks "$node_pid")"
    jq -c --arg run "$name" --arg cpu "$(( after - before ))" --arg hz "$ticks" \
      '{run: $run, viewers, with_frames: .viewers_with_frames,
        cpu_ms_per_join: (($cpu|tonumber) * 1000 / ($hz|tonumber) / .viewers * 100 | round / 100),
        join_p50: .join_ms.p50, join_p99: .join_ms.p99,
        connected_p50: .join_phases_ms.connected.p50, connected_p99: .join_phases_ms.connected.p99,
        answer_p50: .join_phases_ms.answer.p50}' "$out/$name.json"
    kill "$node_pid"; wait "$node_pid" 2>/dev/null || true
    node_pid=""
    rm -rf "$data"; data=""
  done
done
