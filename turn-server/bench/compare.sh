#!/usr/bin/env bash
# Relayed throughput and CPU per relayed Mbit: relaycast-turn beside coturn's turnserver, both
# on loopback, both driven by the same turnutils_uclient load against one turnutils_peer echo.
#   turn-server/bench/compare.sh [CLIENTS] [MESSAGES] [LENGTH] [INTERVAL_MS]
# Needs: cargo build --release -p relaycast-turn; Debian coturn.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${1:-50} MESSAGES=${2:-2000} LENGTH=${3:-1000} INTERVAL=${4:-1}
SECRET=bench-secret PEER_PORT=${PEER_PORT:-39480} OURS_PORT=${OURS_PORT:-39478} COTURN_PORT=${COTURN_PORT:-39490}
BIN=${RELAYCAST_TURN_BIN:-target/release/relaycast-turn}
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do ss -Hlun "sport = :$1" | grep -q . && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 & pids+=($!)
wait_port "$PEER_PORT"

run() { # NAME PID PORT
  local name=$1 pid=$2 port=$3
  local user="$(( $(date +%s) + 3600 )):bench"
  local pass; pass=$(printf %s "$user" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64)
  local c0; c0=$(cpu_ticks "$pid")
  local t0; t0=$(date +%s.%N)
  turnutils_uclient -c -m "$CLIENTS" -n "$MESSAGES" -l "$LENGTH" -z "$INTERVAL" -u "$user" -w "$pass" \
    -e 127.0.0.1 -r "$PEER_PORT" -p "$port" 127.0.0.1 > "$WORK/$name.out" 2>&1 || true
  local t1; t1=$(date +%s.%N)
  local c1; c1=$(cpu_ticks "$pid")
  local sent recv lost
  sent=$(grep -o 'tot_send_bytes ~ [0-9]*' "$WORK/$name.out" | tail -1 | awk '{print $3}' || true)
  recv=$(grep -o 'tot_recv_bytes ~ [0-9]*' "$WORK/$name.out" | tail -1 | awk '{print $3}' || true)
  lost=$(grep -o 'Total lost packets [0-9]* ([0-9.]*%)' "$WORK/$name.out" | tail -1 || true)
  awk -v n="$name" -v s="${sent:-0}" -v r="${recv:-0}" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v tick="$TICK" -v lost="$lost" 'BEGIN {
    mbit = (s + r) * 8 / 1e6; wall = t1 - t0; cpu = c / tick;
    printf "| %s | %.1f | %.1f | %.2f | %.1f %% | %.2f | %s |\n", n, mbit, wall, mbit / wall, 100 * cpu / wall, (mbit > 0 ? 1000 * cpu / mbit : 0), lost
  }'
}

"$BIN" --turn "127.0.0.1:$OURS_PORT" --turn-secret "$SECRET" --turn-allow-peer 127.0.0.1/32 \
  --turn-max-bitrate 0 --turn-max-per-ip 100000 --turn-max-per-user 100000 --data-dir "$WORK" >/dev/null 2>&1 & OURS=$!; pids+=($OURS)
turnserver -n --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 --listening-port "$COTURN_PORT" --use-auth-secret \
  --static-auth-secret "$SECRET" --realm relaycast --allow-loopback-peers --allowed-peer-ip 127.0.0.1 --no-tls --no-dtls --no-cli \
  --no-stdout-log --log-file "$WORK/coturn.log" --db "$WORK/turndb" --simple-log --min-port 40000 --max-port 49999 >/dev/null 2>&1 & COTURN=$!; pids+=($COTURN)
wait_port "$OURS_PORT"; wait_port "$COTURN_PORT"

echo "load: turnutils_uclient -c -m $CLIENTS -n $MESSAGES -l $LENGTH -z $INTERVAL (UDP, channels), peer turnutils_peer"
echo "| server | relayed Mbit (both directions) | wall s | Mbit/s | server CPU (of one core) | CPU ms per relayed Mbit | loss |"
echo "|---|---|---|---|---|---|---|"
for round in 1 2; do
  run "relaycast-turn (round $round)" "$OURS" "$OURS_PORT"
  run "coturn turnserver (round $round)" "$COTURN" "$COTURN_PORT"
done
