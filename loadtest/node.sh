# Sourced by the load-test scripts: starts a node pinned to one core and waits for its HTTP URL.
#
#   start_node CPU BIN DATA [FLAGS...]
# Runs BIN (a relaycast binary) on loopback with NODE_WORKERS media workers (1), its data and stdout in DATA,
# and sets node_pid and node_url; exits the script if the node does not print its URL in 10 s.
start_node() {
  local cpu="$1" bin="$2" data="$3"
  shift 3
  RELAYCAST_LOG=warn taskset -c "$cpu" "$bin" --http 127.0.0.1:0 --media-port 0 --data-dir "$data" \
    --workers "${NODE_WORKERS:-1}" "$@" > "$data/stdout" &
  node_pid=$!
  node_url=""
  for _ in $(seq 100); do
    node_url="$(awk '/^  http: /{print $2}' "$data/stdout")"
    [ -n "$node_url" ] && return 0
    sleep 0.1
  done
  echo "relaycast ($bin) did not start" >&2
  exit 1
}
