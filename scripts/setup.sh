#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: a no-op when all is there.
#
# - Debian packages: a TrueType font for the heatmap's text (fonts-dejavu-core),
#   Mesa's software Vulkan driver so the wgpu tests run without a GPU
#   (mesa-vulkan-drivers, libvulkan1), and headless Chromium with its
#   WebDriver for the dashboard's browser test (chromium, chromium-driver).
# - Rust: the wasm32-unknown-unknown target and the wasm-bindgen CLI
#   (the browser engine, crates/dsi-web), rustfmt and clippy.
#
# Needs root or sudo for apt-get when a package is missing. Called by
# scripts/test.sh (the README's test command) and by .ci/run.
set -euo pipefail

need_apt=()
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
for pkg in mesa-vulkan-drivers libvulkan1; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)

if [ ${#need_apt[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: the tests need ${need_apt[*]} (Debian names) and this machine has no apt-get;" \
             "install their equivalents, or run a subset, e.g. DSI_TEST_BACKENDS=cpu,ndarray" >&2
        exit 1
    fi
    if [ "$(id -u)" = 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup: the tests need ${need_apt[*]}; run as root or install them:" \
             "apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${need_apt[*]}"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The browser engine: the wasm target from rustup's server, and the
# wasm-bindgen CLI at exactly the version of the wasm-bindgen crate in
# Cargo.lock (its output must match the crate). Both are required: the
# tests build and run the engine in Chromium.
if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
    rustup target add wasm32-unknown-unknown || {
        echo "setup: could not add the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown needs rustup's server)" >&2
        exit 1
    }
fi
bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
    echo "setup: installing wasm-bindgen-cli $bindgen_version"
    # --locked takes the CLI's own lock file; a registry mirror that lacks
    # one of those exact versions gets the newest compatible ones instead
    # (the CLI's version, the one that matters, is pinned either way).
    cargo install -q wasm-bindgen-cli --version "=$bindgen_version" --locked ||
        cargo install -q wasm-bindgen-cli --version "=$bindgen_version"
fi
for component in rustfmt clippy; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done

# The OpenAI Python client, the reference client of the server's tests
# (crates/dsi-cli/tests/serve_openai.rs), in a venv of its own under target/.
venv="${DSI_OPENAI_VENV:-$PWD/target/openai-venv}"
if ! "$venv/bin/python" -c 'import openai' >/dev/null 2>&1; then
    echo "setup: installing the openai Python client into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'openai==2.54.0'
fi
