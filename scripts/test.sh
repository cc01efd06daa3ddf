#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/setup.sh),
# says which backends the run covers, then runs the whole suite.
#
#   bash scripts/test.sh                 # everything, on every backend built
#   DSI_TEST_BACKENDS=cpu,ndarray bash scripts/test.sh   # leave wgpu out
#   bash scripts/test.sh -p dsi-core     # extra arguments go to cargo test
#
# .ci/run calls this after its format and lint checks, so CI and the README
# run the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Mesa's Vulkan loader warns on every start without a runtime dir.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"
    export XDG_RUNTIME_DIR
fi

# Which backends run, on which adapters; a selected backend that cannot start
# fails here in seconds with the line that names the fix.
echo "test: backends"
cargo test --workspace --test backends -- --nocapture --quiet

# The browser engine, built for wasm32 in release with the page and the
# bundled pair (target/web/play), which the /play browser test loads; setup.sh
# has installed the wasm32 target and wasm-bindgen or failed.
echo "test: the browser engine (bash scripts/build-web.sh)"
bash scripts/build-web.sh

echo "test: cargo test --workspace $*"
cargo test --workspace "$@"

# The kernels' portable path, end to end: the same batch-invariance tests with
# the vector path switched off (the kernels' own tests run both paths).
if [ "$#" -eq 0 ]; then
    echo "test: batch invariance on the portable kernels (DSI_KERNELS=portable)"
    DSI_KERNELS=portable cargo test --workspace --test batch
fi
