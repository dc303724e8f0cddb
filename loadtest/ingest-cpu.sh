#!/usr/bin/env bash
# CPU of the node per ingested stream: N ffmpeg encoders push a pre-encoded H264 + AAC file
# (-c copy, so ffmpeg itself costs little) over RTMP or SRT to a release node pinned to one core
# (--no-archive, no viewers); the node's CPU time is read from /proc over the measurement window.
# Each protocol runs with audio (repacketizing + AAC→Opus) and without (-an: repacketizing only),
# for 1 and STREAMS streams, in one run so the figures compare.
#
#   loadtest/ingest-cpu.sh [OUT] [SECONDS]            (defaults: target/ingest-cpu, 20)
# Env: SKIP_BUILD (set: use the existing release binary), BIN_DIR (default target/release),
#      STREAMS (4), SERVER_CPU (0), LOAD_CPU (1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/ingest-cpu}")"
seconds="${2:-20}"
streams="${STREAMS:-4}"
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
mkdir -p "$out"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p relaycast --manifest-path "$root/Cargo.toml"
bin="${BIN_DIR:-$root/target/release}"
work="$(mktemp -d)"
node_pid=""
pushers=()
cleanup() {
  for p in "${pushers[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=loadtest/node.sh
. "$root/loadtest/node.sh"

# 30 s of 1280x720 30 fps H264 (baseline, no B-frames, 2 s GOP, 2.5 Mb/s) and 48 kHz stereo AAC.
src="$work/source.ts"
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t 30 -c:v libx264 -profile:v baseline -bf 0 -g 60 -b:v 2500k -pix_fmt yuv420p -c:a aac -b:a 128k -ac 2 -f mpegts "$src"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run PROTO AUDIO N: one node, N pushers, prints one JSON line.
run() {
  local proto="$1" audio="$2" n="$3" data="$work/$1-$2-$3"
  mkdir -p "$data"
  start_node "$server_cpu" "$bin/relaycast" "$data" --publish-token bench --no-mdns --no-archive --no-turn \
    --rtmp 127.0.0.1:0 --srt 127.0.0.1:0
  local rtmp srt
  for _ in $(seq 50); do
    rtmp="$(awk '/^  rtmp: /{print $2}' "$data/stdout")"
    srt="$(awk '/^  srt: /{print $2}' "$data/stdout" | sed 's/?.*//')"
    [ -n "$rtmp" ] && [ -n "$srt" ] && break
    sleep 0.1
  done
  local a=()
  [ "$audio" = no ] && a=(-an)
  pushers=()
  for i in $(seq "$n"); do
    local url fmt
    # FLV wants AAC as raw frames with an AudioSpecificConfig, MPEG-TS carries ADTS.
    local bsf=()
    if [ "$proto" = rtmp ]; then url="$rtmp/s$i?token=bench"; fmt=flv; bsf=(-bsf:a aac_adtstoasc); else url="$srt?streamid=publish:s$i:bench"; fmt=mpegts; fi
    [ "$audio" = no ] && bsf=()
    taskset -c "$load_cpu" ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$src" -c copy "${a[@]}" "${bsf[@]}" -f "$fmt" "$url" 2>>"$data/ffmpeg.log" &
    pushers+=($!)
  done
  # Every stream live, then a few seconds to settle.
  for _ in $(seq 100); do
    [ "$(curl -sf "$node_url/api/streams" | jq '[.streams[] | select(.live)] | length')" = "$n" ] && break
    sleep 0.2
  done
  sleep 5
  local t0 t1 live
  t0="$(ticks "$node_pid")"
  sleep "$seconds"
  t1="$(ticks "$node_pid")"
  live="$(curl -sf "$node_url/api/streams" | jq '[.streams[] | select(.live)] | length')"
  local opus
  opus="$(curl -sf "$node_url/metrics" | awk -v m="relaycast_${proto}_audio_frames_total" '$1 == m {print $2}')"
  local hz
  hz="$(getconf CLK_TCK)"
  jq -nc --arg proto "$proto" --arg audio "$audio" --argjson n "$n" --argjson live "$live" --argjson opus "${opus:-0}" \
    --argjson cores "$(echo "($t1 - $t0) / $hz / $seconds" | bc -l)" \
    '{proto: $proto, audio: ($audio == "yes"), streams: $n, live: $live, opus_packets: $opus, node_cores: ($cores * 1000 | round / 1000), per_stream: ($cores / $n * 1000 | round / 1000)}' | tee -a "$out/ingest-cpu.jsonl"
  for p in "${pushers[@]}"; do kill "$p" 2>/dev/null || true; done
  pushers=()
  kill "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
}

: > "$out/ingest-cpu.jsonl"
for proto in rtmp srt; do
  for audio in no yes; do
    run "$proto" "$audio" 1
    run "$proto" "$audio" "$streams"
  done
done
