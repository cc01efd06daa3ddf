#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) and prints how
# many inputs each executed; new coverage lands in fuzz/corpus/TARGET and a
# failing input in fuzz/artifacts/TARGET (copy it to fuzz/regressions/TARGET
# once fixed: tests/fuzz_corpora.rs replays both folders on stable in CI).
#
#   bash scripts/fuzz.sh 300            # five minutes per target
#   bash scripts/fuzz.sh 60 stop_scan   # some targets only
#
# Needs a nightly toolchain and cargo-fuzz (installed here when missing:
# `rustup toolchain install nightly --profile minimal`, `cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request checkpoint chat tokenizer detokenize stop_scan)
fi

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# No sanitizer: the targets reach no unsafe code of ours, and the build of
# burn with one takes much longer. Allocations stay under 2 GiB.
cargo +nightly fuzz build -s none
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if cargo +nightly fuzz run -s none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    echo "fuzz: $target: $status, $runs inputs in ${seconds} s ($cov)"
    if [ "$status" = FAILED ]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20
    fi
    rm -f "$log"
done
