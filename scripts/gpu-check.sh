#!/usr/bin/env bash
# The GPU check, prepared for a machine with an NVIDIA GPU (the device
# image has Python with torch and transformers). One run:
#
#   1. builds with --features cuda (skipped with DSI_GPU_CHECK_PREBUILT=1
#      when target/ was carried in);
#   2. runs the model, kernel and lossless suites with DSI_TEST_BACKENDS=cuda:
#      each runs f32, bf16 and f16 itself (parity against transformers, the
#      KV-cache checks, batch and chunk invariance, every GPU kernel against
#      its reference, greedy/seeded/processor losslessness of DSI, SI and
#      non-SI), plus the CLI's device errors;
#   3. `dsi bench decode` on a Llama-3.2-1B-shaped random checkpoint in bf16
#      beside transformers' own greedy decode of the same checkpoint on the
#      same GPU (scripts/hf_greedy_bench.py), tokens/s of both;
#   4. DSI on this one GPU with a drafter (the same shape cut to 2 layers)
#      and N = 1, 2, 4 target workers (`dsi bench modes`), against non-SI:
#      do concurrent forwards on one GPU overlap?
#
# and prints one JSON summary (also $OUT/summary.json; logs beside it).
#
#   bash scripts/gpu-check.sh
#   OUT=/tmp/check DSI_GPU_CHECK_PREBUILT=1 bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-target/gpu-check}"
mkdir -p "$out"
: > "$out/steps.jsonl"
export CARGO_TERM_COLOR=never DSI_TEST_BACKENDS=cuda
features="dsi/cuda,dsi-models/cuda,dsi-cli/cuda"
dsi=target/release/dsi

# Runs a step, its output in $out/NAME.log; records its exit code and time.
step() {
    local name=$1 start rc
    shift
    echo "gpu-check: $name" >&2
    start=$(date +%s)
    "$@" > "$out/$name.log" 2>&1
    rc=$?
    printf '{"step":"%s","rc":%d,"seconds":%d}\n' "$name" "$rc" "$(($(date +%s) - start))" \
        >> "$out/steps.jsonl"
    tail -n 3 "$out/$name.log" >&2
    return "$rc"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    > "$out/gpu.txt" 2>&1 || true

if [ "${DSI_GPU_CHECK_PREBUILT:-0}" != 1 ]; then
    step build cargo build --release -p dsi-cli --features cuda || true
fi

# 2. The suites, on the GPU (the CPU-only tests return at once).
step test-models cargo test --release --features "$features" -p dsi-models \
    --test parity --test batch --test gpu_kernels || true
step test-lossless cargo test --release --features "$features" -p dsi --test lossless || true
step test-device-errors cargo test --release --features "$features" -p dsi-cli \
    --test generate_cli -- gpu_number || true

# 3. Decode speed: dsi against transformers, the same checkpoint and GPU.
model="$out/llama-3.2-1b"
drafter="$out/llama-3.2-1b-2-layers"
step checkpoints bash -c "$dsi random-checkpoint --shape llama-3.2-1b --dtype bf16 --out $model \
    && $dsi random-checkpoint --shape llama-3.2-1b --dtype bf16 --layers 2 --out $drafter" || true
step dsi-decode bash -c "$dsi bench decode --model $model --backend cuda --dtype bf16 \
    --tokens 128 --format json > $out/dsi-decode.json" || true
step hf-decode bash -c "python3 scripts/hf_greedy_bench.py $model --dtype bf16 \
    --prefill 128 --tokens 128 > $out/hf-decode.json" || true

# 4. Speculation parallelism on one GPU: N target workers share it.
for mode_targets in nonsi:1 dsi:1 dsi:2 dsi:4; do
    mode=${mode_targets%:*}
    n=${mode_targets#*:}
    step "modes-$mode-$n" bash -c "$dsi bench modes --model $model --drafter $drafter \
        --backend cuda --dtype bf16 --mode $mode --targets $n --k 5 --max-prompts 3 \
        --max-tokens 64 --rounds 1 --format json > $out/modes-$mode-$n.json" || true
done

python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def read(name):
    try:
        text = (out / name).read_text().strip().splitlines()
        return json.loads(text[-1]) if text else None
    except (OSError, ValueError):
        return None
steps = [json.loads(l) for l in (out / "steps.jsonl").read_text().splitlines() if l.strip()]
summary = {
    "gpu": (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else None,
    "steps": steps,
    "decode": {"dsi": read("dsi-decode.json"), "transformers": read("hf-decode.json")},
    "modes": {p.stem: read(p.name) for p in sorted(out.glob("modes-*.json"))},
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary))
PY
