#!/usr/bin/env bash
# Builds the browser engine (crates/dsi-web) for wasm32 in release, wraps it
# with wasm-bindgen and assembles the page with the bundled pair into a
# folder any static web server can host:
#
#   bash scripts/build-web.sh                 # -> target/web/play ($CARGO_TARGET_DIR/web/play)
#   bash scripts/build-web.sh OUT             # -> OUT
#   python3 -m http.server -d target/web/play # then open http://localhost:8000/
#
# `dsi serve` serves the same page at /play, with the engine from
# target/web/play/pkg (or --play-engine DIR). Needs the wasm32 target and
# the wasm-bindgen CLI of Cargo.lock's version: scripts/setup.sh installs
# both.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bash scripts/setup.sh

# target/ unless CARGO_TARGET_DIR moves it; dsi serve looks for the engine in
# its web/play/pkg, beside the binary's profile folder.
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
out="${1:-$target_dir/web/play}"
echo "web: cargo build -p dsi-web --target wasm32-unknown-unknown --release"
cargo build -p dsi-web --lib --target wasm32-unknown-unknown --release
mkdir -p "$out/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" \
    "$target_dir/wasm32-unknown-unknown/release/dsi_web.wasm"
cp web/play/index.html web/play/play.js web/play/play.css web/timeline.js web/style.css "$out/"
for role in target drafter; do
    mkdir -p "$out/models/$role"
    cp models/pystd/$role/config.json models/pystd/$role/generation_config.json \
       models/pystd/$role/tokenizer.json models/pystd/$role/model.safetensors "$out/models/$role/"
done
wasm="$out/pkg/dsi_web_bg.wasm"
echo "web: $wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped; page in $out"
