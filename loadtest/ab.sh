#!/usr/bin/env bash
# Alternating A/B of two relaycast binaries under the same load: on a shared, noisy machine only
# runs taken close together compare, so A and B take turns, ROUNDS times.
#
#   loadtest/ab.sh BIN_A BIN_B [OUT]         (OUT: where the JSON reports go, default target/ab)
# Env: VIEWERS (100), DURATION (15s), ROUNDS (2), RID (f; empty: automatic layers),
#      NODE_ARGS (--no-archive), SERVER_CPU (0), LOAD_CPU (1), LOADTEST (target/release/relaycast-loadtest),
#      WORKERS_A, WORKERS_B (media workers of each variant, 1; e.g. the same binary twice with
#      WORKERS_B=2 measures what a second worker on the same core costs),
#      ARGS_A, ARGS_B (more node flags for each variant; e.g. the same binary twice with
#      ARGS_B="--send-path own" compares the two send paths)
# Prints one JSON line per run: egress, node CPU (user / system seconds), Gbit/s per core, latency
# to the first packet and to the frame complete, loss, join time (and its answer and connected
# phases), RSS per viewer, and from /metrics the stream's keyframe requests to the publisher,
# viewers started from the cached keyframe, congestion skips, and the node's datagrams and
# sendmmsg messages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 2 ] || { sed -n 2,10p "$0" >&2; exit 2; }
bins=("$(realpath "$1")" "$(realpath "$2")")
out="$(realpath -m "${3:-$root/target/ab}")"
viewers="${VIEWERS:-100}"
duration="${DURATION:-15s}"
rounds="${ROUNDS:-2}"
rid="${RID-f}"
node_args="${NODE_ARGS---no-archive}"
loadtest="${LOADTEST:-$root/target/release/relaycast-loadtest}"
mkdir -p "$out"
data=""
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null; [ -n "$data" ] && rm -rf "$data"; }
trap cleanup EXIT
# shellcheck source=loadtest/node.sh
. "$root/loadtest/node.sh"
for r in $(seq "$rounds"); do
  for i in 0 1; do
    name="$([ "$i" = 0 ] && echo A || echo B)$r"
    data="$(mktemp -d)"
    workers="$([ "$i" = 0 ] && echo "${WORKERS_A:-1}" || echo "${WORKERS_B:-1}")"
    # shellcheck disable=SC2086
    variant_args="$([ "$i" = 0 ] && echo "${ARGS_A:-}" || echo "${ARGS_B:-}")"
    # shellcheck disable=SC2086
    NODE_WORKERS="$workers" start_node "${SERVER_CPU:-0}" "${bins[$i]}" "$data" --publish-token ab --no-mdns $node_args $variant_args
    url="$node_url"
    json="$out/$name.json"
    taskset -c "${LOAD_CPU:-1}" "$loadtest" --url "$url" --stream ab --token ab --viewers "$viewers" \
      --duration "$duration" --server-pid "$node_pid" ${rid:+--rid "$rid"} --json "$json" > /dev/null 2> "$out/$name.log" &
    load_pid=$!
    # The stream's counters go with the stream when the load test ends: sample them meanwhile.
    plis=0 cached=0 skips=0
    while kill -0 "$load_pid" 2>/dev/null; do
      page="$(curl -s "$url/metrics" || true)"
      stream_metric() { awk -v m="$1{stream=\"ab\"}" '$1 == m {print $2}' <<<"$page"; }
      v="$(stream_metric relaycast_stream_upstream_plis_total)"; [ -n "$v" ] && plis="$v"
      v="$(stream_metric relaycast_stream_cached_starts_total)"; [ -n "$v" ] && cached="$v"
      v="$(stream_metric relaycast_stream_congestion_skips_total)"; [ -n "$v" ] && skips="$v"
      sleep 1
    done
    wait "$load_pid"
    metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
    datagrams="$(metric relaycast_egress_packets_total)"
    messages="$(metric relaycast_egress_send_messages_total)"
    jq -c --arg run "$name" --arg d "${datagrams:-0}" --arg m "${messages:-0}" \
      --arg plis "${plis:-0}" --arg cached "${cached:-0}" --arg skips "${skips:-0}" \
      --argjson workers "$workers" \
      '{run: $run, viewers, workers: $workers, gbps: .egress.gbps, user_s: .server_cpu.user_seconds, system_s: .server_cpu.system_seconds,
        gbps_per_core: .efficiency.gbps_per_core, first_p50: .latency_ms.p50, first_p99: .latency_ms.p99,
        frame_p50: .frame_latency_ms.p50, frame_p99: .frame_latency_ms.p99, loss: .loss.ratio,
        join_p50: .join_ms.p50, rss_per_viewer_kib: .server_memory.per_viewer_kib,
        join_answer_p50: .join_phases_ms.answer.p50, join_connected_p50: .join_phases_ms.connected.p50,
        keyframe_requests: ($plis|tonumber), cached_starts: ($cached|tonumber), congestion_skips: ($skips|tonumber),
        datagrams: ($d|tonumber), messages: ($m|tonumber)}' "$json"
    kill "$node_pid"; wait "$node_pid" 2>/dev/null || true
    node_pid=""
    rm -rf "$data"; data=""
  done
done
