#!/usr/bin/env bash
# The browser engine's benchmark: builds it (scripts/build-web.sh), then races
# non-SI, SI and DSI on /play in headless Chromium's WebGPU (SwiftShader on a
# machine without a GPU) and prints tokens/s, time to load and to the first
# token (cold and warm) and the wasm's size.
#
#   bash scripts/bench-web.sh            # 2 races, the second one warm
#   DSI_BENCH_ROUNDS=4 bash scripts/bench-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web.sh
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"
    export XDG_RUNTIME_DIR
fi
cargo test -p dsi-cli --test serve_play bench_play -- --ignored --nocapture 2>&1 | grep -E "^bench play|test result|panicked|not set within|failed"
