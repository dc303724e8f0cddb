#!/usr/bin/env bash
# Control plane of a real mesh: N nodes on loopback (node 0 the bootstrap node of all others, TCP
# mesh only, no mDNS), one stream published at node 0 by the synthetic publisher and watched at a
# few nodes (a relay tree), then per node over a window: the libp2p TCP bytes sent and received
# (every mesh protocol: gossip, Kademlia, identify, ping, relay requests; read from the kernel's
# per-socket counters with `ss`, so any binary can be measured), the connections, and, when the
# binary exports them, the gossip bytes by topic (relaycast_mesh_gossip_bytes_total).
#
#   loadtest/mesh-control.sh [BIN_DIR] [NODES] [WINDOW_SECS]   (defaults: target/debug, 10, 20)
# Env: VIEW_AT (node indexes with a viewer, default "3 6 9"), MAX_PEERS (passed as --max-peers
# when set), LOADTEST_BIN (relaycast-loadtest, default BIN_DIR's).
# Prints one line per node and the mean; needs ss (iproute2), curl, awk.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$root/target/debug}")"
nodes="${2:-10}"
window="${3:-20}"
view_at="${VIEW_AT:-3 6 9}"
loadtest="${LOADTEST_BIN:-$bin/relaycast-loadtest}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT

extra=()
[ -n "${MAX_PEERS:-}" ] && extra+=(--max-peers "$MAX_PEERS")

# start I [flags...]: runs node I and waits for its http line.
start() {
  local i="$1"
  shift
  mkdir -p "$work/$i"
  RELAYCAST_LOG="${NODE_LOG:-warn}" "$bin/relaycast" --http 127.0.0.1:0 --media-port 0 --publish-token ctl \
    --data-dir "$work/$i" --no-mdns --no-archive --workers 1 --p2p /ip4/127.0.0.1/tcp/0 "${extra[@]}" "$@" \
    > "$work/$i/stdout" 2> "$work/$i/stderr" &
  pids+=("$!")
  echo "$!" > "$work/$i/pid"
  for _ in $(seq 200); do
    grep -q '^  http: ' "$work/$i/stdout" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node $i did not start" >&2
  cat "$work/$i/stderr" >&2
  exit 1
}
http_of() { awk '/^  http: /{print $2}' "$work/$1/stdout"; }
p2p_of() { awk '/^  p2p: /{print $2; exit}' "$work/$1/stdout"; }
port_of() { p2p_of "$1" | sed -E 's|^/ip4/[^/]+/tcp/([0-9]+)/.*|\1|'; }

start 0
for i in $(seq 1 $((nodes - 1))); do start "$i" --bootstrap "$(p2p_of 0)"; done
ports="$(for i in $(seq 0 $((nodes - 1))); do port_of "$i"; done | paste -sd' ')"

# A viewer at the last node of VIEW_AT, unmeasured feeders at the others: each attaches a relay.
last="${view_at##* }"
feeders=()
for i in $view_at; do [ "$i" = "$last" ] || feeders+=(--feeder-url "$(http_of "$i")"); done
"$loadtest" --url "$(http_of 0)" --viewer-url "$(http_of "$last")" "${feeders[@]}" --stream ctl --token ctl \
  --viewers 1 --warmup 2s --duration "$((window + 30))s" > "$work/loadtest.out" 2> "$work/loadtest.err" &
pids+=("$!")
lt=$!

# snapshot I N: "tx rx conns" of node I's libp2p TCP sockets (local or peer port a mesh port);
# the sockets' address pairs go to I/socketsN (to count the connections opened in the window).
snapshot() {
  local pid
  pid="$(cat "$work/$1/pid")"
  ss -tinpH state established 2>/dev/null | awk -v pid="pid=$pid," -v ports="$ports" -v list="$work/$1/sockets$2" '
    BEGIN { n = split(ports, p, " "); for (i = 1; i <= n; i++) mesh[p[i]] = 1; printf "" > list }
    /^[0-9A-Za-z]/ { ours = 0; split($3, l, ":"); split($4, r, ":");
      if (index($0, pid) && (mesh[l[length(l)]] || mesh[r[length(r)]])) { ours = 1; conns++; print $3, $4 > list } next }
    ours { for (i = 1; i <= NF; i++) { if ($i ~ /^bytes_sent:/) { split($i, a, ":"); tx += a[2] }
                                       if ($i ~ /^bytes_received:/) { split($i, a, ":"); rx += a[2] } } }
    END { printf "%d %d %d\n", tx, rx, conns }'
}
# gossip I N: "sent received" gossip bytes of node I from its metrics (0 0 without them); keeps
# the metric lines in I/gossipN.
gossip() {
  curl -s "$(http_of "$1")/metrics" | grep -E '^relaycast_mesh_gossip_(bytes|messages)_total' > "$work/$1/gossip$2" || true
  awk '/_bytes_/ { if ($0 ~ /direction="sent"/) s += $NF; else r += $NF } END { printf "%d %d\n", s, r }' "$work/$1/gossip$2"
}
peers_metric() { curl -s "$(http_of "$1")/metrics" | awk '/^relaycast_mesh_connected_peers /{print $2; f=1} END{if(!f) print "-"}'; }

# Let the tree form (every viewer's node in the stream's tree, as node 0 sees it; at most 90 s),
# then measure over the window.
want=$(echo $view_at | wc -w)
for _ in $(seq 90); do
  have="$(curl -s "$(http_of 0)/api/topology" | jq '[.streams[]? | .nodes[]? | select(.depth > 0)] | length' 2>/dev/null || echo 0)"
  [ "${have:-0}" -ge "$want" ] && break
  sleep 1
done
[ "${have:-0}" -ge "$want" ] || { echo "the relay tree did not form ($have of $want relays)" >&2; tail -5 "$work/loadtest.err" >&2; exit 1; }
sleep 5
for i in $(seq 0 $((nodes - 1))); do snapshot "$i" 0 > "$work/$i/ss0"; gossip "$i" 0 > "$work/$i/g0"; done
t0=$(date +%s.%N)
sleep "$window"
for i in $(seq 0 $((nodes - 1))); do snapshot "$i" 1 > "$work/$i/ss1"; gossip "$i" 1 > "$work/$i/g1"; done
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc -l)

# TCP rates are those of the sockets open at both ends of the window: "-" when one closed.
echo "node  tcp_tx_B/s  tcp_rx_B/s  conns  opened  peers_metric  gossip_tx_B/s  gossip_rx_B/s"
topo="$(curl -s "$(http_of 0)/api/topology" || true)"
for i in $(seq 0 $((nodes - 1))); do
  read -r tx0 rx0 _ < "$work/$i/ss0"
  read -r tx1 rx1 c1 < "$work/$i/ss1"
  read -r gs0 gr0 < "$work/$i/g0"
  read -r gs1 gr1 < "$work/$i/g1"
  opened="$(sort "$work/$i/sockets0" | comm -13 - <(sort "$work/$i/sockets1") | wc -l)"
  closed="$(sort "$work/$i/sockets0" | comm -23 - <(sort "$work/$i/sockets1") | wc -l)"
  if [ "$closed" -eq 0 ]; then
    tx="$(echo "($tx1 - $tx0) / $secs" | bc -l)" rx="$(echo "($rx1 - $rx0) / $secs" | bc -l)"
  else
    tx=- rx=-
  fi
  printf "%4d  %10.10s  %10.10s  %5d  %6d  %12s  %13.0f  %13.0f\n" "$i" "$tx" "$rx" "$c1" "$opened" "$(peers_metric "$i")" \
    "$(echo "($gs1 - $gs0) / $secs" | bc -l)" "$(echo "($gr1 - $gr0) / $secs" | bc -l)"
done | tee "$work/table"
awk '{ if ($2 != "-") { tx += $2; rx += $3; m++ } c += $4; o += $5; gs += $7; gr += $8; n++ }
  END { printf "mean  %10.0f  %10.0f  %5.1f  %6.1f  %12s  %13.0f  %13.0f   (TCP over %d nodes)\n", m ? tx/m : 0, m ? rx/m : 0, c/n, o/n, "", gs/n, gr/n, m }' "$work/table"
echo "gossip bytes/s and messages/s per node by topic and direction (mean of the nodes):"
for i in $(seq 0 $((nodes - 1))); do
  awk -v sign=-1 '{ print $1, sign * $2 }' "$work/$i/gossip0"
  awk -v sign=1 '{ print $1, sign * $2 }' "$work/$i/gossip1"
done | awk -v n="$nodes" -v secs="$secs" '{ d[$1] += $2 } END { for (k in d) printf "  %-90s %8.0f\n", k, d[k] / n / secs }' | sort
echo "window ${secs}s; relay tree (node: depth):"
echo "$topo" | jq -c '[.streams[]? | .nodes[]? | .depth] | group_by(.) | map({depth: .[0], nodes: length})' 2>/dev/null || true
kill "$lt" 2>/dev/null || true
