"""transformers' own greedy decode of a checkpoint, timed on a GPU: the
reference `scripts/gpu-check.sh` holds `dsi bench decode` against.

    python3 scripts/hf_greedy_bench.py DIR --dtype bf16 --prefill 128 --tokens 128

Feeds a prompt of `--prefill` ids (the same filler `dsi bench decode`
uses: id i*7919 % vocab), then `--tokens` greedy steps one at a time with
the KV cache (what batch-1 decoding is), the device synchronized around the
timed loop. Prints one JSON object: decode tokens/s, prefill tokens/s, the
device, dtype and the first generated ids.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dtype", default="bf16", choices=["f32", "f16", "bf16"])
    parser.add_argument("--prefill", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
    vocab = model.config.vocab_size
    prompt = torch.tensor([[i * 7919 % vocab for i in range(args.prefill)]], device=args.device)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        # Warm-up: kernels and allocator.
        model(prompt, use_cache=True)
        sync()
        start = time.perf_counter()
        out = model(prompt, use_cache=True)
        sync()
        prefill_s = time.perf_counter() - start
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        generated = []
        sync()
        start = time.perf_counter()
        for _ in range(args.tokens):
            out = model(token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
            generated.append(token)
        sync()
        decode_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "engine": "transformers",
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
                "dtype": args.dtype,
                "prefill_tokens_per_s": args.prefill / prefill_s,
                "decode_tokens_per_s": args.tokens / decode_s,
                "first_ids": [int(t) for t in torch.cat(generated, dim=1)[0, :16]],
            }
        )
    )


if __name__ == "__main__":
    main()
