#!/usr/bin/env bash
# Janus 1.1 (Debian `janus`) beside Relaycast: the streaming plugin on loopback in a network
# namespace this script creates, fed by relaycast-loadtest's synthetic publisher over plain RTP
# (one VP8 layer, 1.5 Mbit/s), watched by the same str0m viewers through the Janus HTTP API.
#
#   loadtest/janus/run.sh [OUT] [DURATION]       (defaults: target/loadtest, 30s)
# Env: SKIP_BUILD (set: use the existing release binary), SERVER_CPU (0), LOAD_CPU (1),
#      VIEWERS ("50 100 200"), THREADS (1).
# Needs root (ip netns) and `apt-get install -y janus`. Everything stays inside the namespace:
# Janus binds 127.0.0.1:8088 there, and ICE runs over an address 10.99.0.1/24
# on a veth pair (libnice gathers no candidates on loopback alone).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(realpath -m "${1:-$root/target/loadtest}")"
duration="${2:-30s}"
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
viewers="${VIEWERS:-50 100 200}"
threads="${THREADS:-1}"
ns="rcjanus$$"
addr="10.99.0.1"
command -v janus >/dev/null || { echo "janus is not installed: apt-get install -y janus" >&2; exit 1; }
mkdir -p "$out"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p relaycast-loadtest --manifest-path "$root/Cargo.toml"
bin="$root/target/release/relaycast-loadtest"
conf="$(mktemp -d)"
janus_pid=""
cleanup() {
  [ -n "$janus_pid" ] && kill "$janus_pid" 2>/dev/null
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$conf"
}
trap cleanup EXIT

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
# A veth pair (both ends in the namespace; the dummy module may be missing) carries the address.
ip netns exec "$ns" ip link add rcveth0 type veth peer name rcveth1
ip netns exec "$ns" ip addr add "$addr/24" dev rcveth0
ip netns exec "$ns" ip link set rcveth0 up
ip netns exec "$ns" ip link set rcveth1 up

plugins_dir=/usr/lib/x86_64-linux-gnu/janus
disabled_plugins="$(cd "$plugins_dir/plugins" && ls lib*.so | grep -v '^libjanus_streaming.so$' | paste -sd, -)"
disabled_transports="$(cd "$plugins_dir/transports" && ls lib*.so | grep -v '^libjanus_http.so$' | paste -sd, -)"
cat > "$conf/janus.jcfg" <<JCFG
general: {
	configs_folder = "$conf"
	plugins_folder = "$plugins_dir/plugins"
	transports_folder = "$plugins_dir/transports"
	events_folder = "$plugins_dir/events"
	loggers_folder = "$plugins_dir/loggers"
	debug_level = 3
	session_timeout = 0
	admin_secret = "unused"
}
media: {
}
nat: {
	ice_enforce_list = "rcveth0"
	ice_lite = false
}
plugins: {
	disable = "$disabled_plugins"
}
transports: {
	disable = "$disabled_transports"
}
events: {
	broadcast = false
}
JCFG
cat > "$conf/janus.transport.http.jcfg" <<JCFG
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = 8088
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
}
cors: {
	allow_origin = "*"
}
JCFG
cat > "$conf/janus.plugin.streaming.jcfg" <<JCFG
general: {
}
loadtest: {
	type = "rtp"
	id = 1
	description = "relaycast-loadtest synthetic VP8"
	media = (
		{ type = "video", mid = "v", port = 5004, pt = 96, codec = "vp8", iface = "127.0.0.1" }
	)
}
JCFG

ip netns exec "$ns" taskset -c "$server_cpu" janus -F "$conf" -C "$conf/janus.jcfg" > "$conf/janus.log" 2>&1 &
janus_pid=$!
for _ in $(seq 100); do
  ip netns exec "$ns" curl -sf http://127.0.0.1:8088/janus/info >/dev/null 2>&1 && break
  sleep 0.1
done
ip netns exec "$ns" curl -sf http://127.0.0.1:8088/janus/info >/dev/null || { echo "janus did not start:" >&2; tail -20 "$conf/janus.log" >&2; exit 1; }

reports=()
for n in $viewers; do
  json="$out/janus-$n.json"
  ip netns exec "$ns" taskset -c "$load_cpu" "$bin" --janus http://127.0.0.1:8088/janus \
    --janus-mountpoint 1 --janus-rtp 127.0.0.1:5004 --bind-ip "$addr" \
    --viewers "$n" --duration "$duration" --threads "$threads" --server-pid "$janus_pid" --json "$json" > /dev/null
  reports+=("$json")
  jq -c '{viewers, with_frames: .viewers_with_frames, gbps: .egress.gbps, loss: .loss.ratio,
          p99: .latency_ms.p99, frame_p99: .frame_latency_ms.p99, join_p50: .join_ms.p50, server_cores: .server_cpu.cores,
          gbps_per_core: .efficiency.gbps_per_core, loadgen_cores: .loadgen_cpu.cores}' "$json" 2>/dev/null || true
done
