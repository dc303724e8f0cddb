#!/usr/bin/env bash
# The soak run (not CI): one node for an hour under churning viewers plus garbage on every port,
# sampling its resident memory and open file descriptors every 10 s. Flat is the goal.
#
#   cargo build --release -p relaycast -p relaycast-loadtest
#   scripts/soak.sh loadtest/results/soak 3600
#
# Load: a steady stream with 5 viewers for the whole run; a second stream re-published every
# CHURN seconds with VIEWERS new viewers each time (they join, watch and leave); and
# scripts/soak_garbage.py sending RATE junk datagrams a second to each media port and the TURN
# port, half headers that stay silent, malformed WHIP/WHEP requests and random bytes to libp2p.
# Output: OUT/samples.csv (seconds, rss_kib, fds, threads), OUT/soak.svg, OUT/node.log,
# OUT/churn.log, and a summary on stdout.
#
# Environment: RELAYCAST_BIN, LOADTEST_BIN (release builds by default), VIEWERS (20),
# CHURN (60 s), RATE (50).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-loadtest/results/soak}
SECS=${2:-3600}
BIN=${RELAYCAST_BIN:-target/release/relaycast}
LOAD=${LOADTEST_BIN:-target/release/relaycast-loadtest}
VIEWERS=${VIEWERS:-20}
CHURN=${CHURN:-60}
RATE=${RATE:-50}
TOKEN=soak-token

mkdir -p "$OUT"
data=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

"$BIN" --http 127.0.0.1:0 --media-port 0 --workers 2 --publish-token "$TOKEN" --data-dir "$data" \
  >"$OUT/node.out" 2>"$OUT/node.log" &
node=$!
pids+=("$node")
for _ in $(seq 150); do grep -q '^  http: ' "$OUT/node.out" 2>/dev/null && break; sleep 0.2; done
url=$(sed -n 's/^  http: //p' "$OUT/node.out" | head -1)
[ -n "$url" ] || { echo "the node did not start; see $OUT/node.log" >&2; exit 1; }
media=$(sed -n 's/^  media: //p' "$OUT/node.out" | head -1 | tr ' ' '\n' | sed 's/.*://' | paste -sd, -)
turn=$(sed -n 's/^  turn: //p' "$OUT/node.out" | head -1)
p2p=$(sed -n 's#^  p2p: .*/tcp/\([0-9]*\).*#\1#p' "$OUT/node.out" | head -1)
echo "node $node at $url, media ports $media, turn ${turn:-none}, p2p ${p2p:-none}; ${SECS}s"

start=$(date +%s)
end=$((start + SECS))

"$LOAD" --url "$url" --stream steady --token "$TOKEN" --viewers 5 --duration "$((SECS - 10))s" --warmup 2s \
  >"$OUT/steady.log" 2>&1 &
pids+=($!)
(
  round=0
  while [ "$(date +%s)" -lt $((end - CHURN)) ]; do
    round=$((round + 1))
    status=0
    "$LOAD" --url "$url" --stream churn --token "$TOKEN" --viewers "$VIEWERS" --duration "$((CHURN - 10))s" \
      --warmup 2s --join-timeout 30s --json "$OUT/churn-last.json" >"$OUT/churn-last.log" 2>&1 || status=$?
    with_frames=$(sed -n 's/^ *"viewers_with_frames": *\([0-9]*\).*/\1/p' "$OUT/churn-last.json" 2>/dev/null | head -1)
    echo "round $round at $(( $(date +%s) - start ))s: exit $status, viewers with frames ${with_frames:-?} of $VIEWERS"
    rm -f "$OUT/churn-last.json"
  done
) >"$OUT/churn.log" 2>&1 &
pids+=($!)
python3 scripts/soak_garbage.py "${url#http://}" "$media" "$turn" "$p2p" "$SECS" "$RATE" >"$OUT/garbage.log" 2>&1 &
pids+=($!)

echo "seconds,rss_kib,fds,threads" >"$OUT/samples.csv"
while [ "$(date +%s)" -lt "$end" ]; do
  kill -0 "$node" 2>/dev/null || { echo "the node exited; see $OUT/node.log" >&2; exit 1; }
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$node/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$node/status")
  fds=$(ls "/proc/$node/fd" | wc -l)
  echo "$(( $(date +%s) - start )),$rss,$fds,$threads" >>"$OUT/samples.csv"
  sleep 10
done
curl -s "$url/metrics" >"$OUT/metrics.txt" || true
python3 scripts/soak_plot.py "$OUT/samples.csv" "$OUT/soak.svg"
