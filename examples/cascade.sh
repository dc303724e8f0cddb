#!/usr/bin/env bash
# Starts a three-node relay tree on this machine — origin A, relay B, relay C — and prints the
# pages to publish at A and to watch at each node. A allows one relay child, so watching at B
# first and then at C builds the chain A → B → C (C at depth 2); the dashboard draws it.
#
#   examples/cascade.sh            # uses target/release/relaycast (builds it when missing)
#   RELAYCAST_BIN=target/debug/relaycast examples/cascade.sh
#
# Ctrl-C stops all three nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${RELAYCAST_BIN:-target/release/relaycast}"
if [ ! -x "$BIN" ]; then
  echo "building $BIN ..."
  cargo build --release -p relaycast
fi
TOKEN="${TOKEN:-cascade-token}"
STREAM="${STREAM:-room}"
WORK="$(mktemp -d -t relaycast-cascade-XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# start NAME HTTP-PORT MEDIA-PORT P2P-PORT [extra flags...]: runs a node, waits for its http line.
start() {
  local name="$1" http="$2" media="$3" p2p="$4"
  shift 4
  mkdir -p "$WORK/$name"
  "$BIN" --http "127.0.0.1:$http" --media-port "$media" --data-dir "$WORK/$name" \
    --publish-token "$TOKEN" --no-mdns --p2p "/ip4/127.0.0.1/tcp/$p2p" "$@" \
    >"$WORK/$name/out.log" 2>"$WORK/$name/err.log" &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    grep -q '^  http: ' "$WORK/$name/out.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node $name did not start; its log:" >&2
  cat "$WORK/$name/err.log" >&2
  exit 1
}

p2p_of() { sed -n 's/^  p2p: //p' "$WORK/$1/out.log" | head -n1; }

start a 8081 51000 7101 --max-relay-children 1
A="$(p2p_of a)"
start b 8082 51100 7102 --bootstrap "$A"
start c 8083 51200 7103 --bootstrap "$A" --bootstrap "$(p2p_of b)"

cat <<EOF
three nodes are running (logs in $WORK):
  A (origin)  http://127.0.0.1:8081   $A
  B (relay)   http://127.0.0.1:8082   $(p2p_of b)
  C (relay)   http://127.0.0.1:8083   $(p2p_of c)

publish at A:   http://127.0.0.1:8081/streamer.html?stream=$STREAM#token=$TOKEN
watch at A:     http://127.0.0.1:8081/viewer.html?stream=$STREAM
watch at B:     http://127.0.0.1:8082/viewer.html?stream=$STREAM     (open this before C)
watch at C:     http://127.0.0.1:8083/viewer.html?stream=$STREAM     (relayed A -> B -> C)
the tree:       http://127.0.0.1:8083/dashboard.html
topology JSON:  http://127.0.0.1:8083/api/topology
Ctrl-C stops the nodes.
EOF
wait
