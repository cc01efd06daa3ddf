#!/usr/bin/env python3
"""A real GGUF file's logits in the engine against transformers loading the
same file (dequantized to f32): greedy top-1 agreement over real text and
code, and the worst relative logit error on sampled positions.

    python3 scripts/gguf_agreement.py models/gguf/qwen2.5-coder-0.5b-instruct.gguf

Text: the project's own Rust and Markdown (code and prose) and the
bundled pair's held-out prompts, cut into windows of --window tokens by
transformers' tokenizer of the file. transformers runs each window (f32);
the engine runs the same ids (`cargo test -p dsi-models --test gguf logits_of_real_windows
-- --ignored`, the cpu backend, quantized weights kept as stored). A
position counts when transformers' top-2 margin exceeds the measured
error bound (twice the worst absolute logit difference seen on the sampled
rows); the goal is top-1 agreement on at least 99% of those.

Needs the fixture venv (scripts/make_gguf_fixtures.py): torch,
transformers, gguf, accelerate.
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent


def corpus() -> str:
    """Real code and prose from the repository, in a fixed order."""
    files = sorted((ROOT / "crates/dsi-core/src").rglob("*.rs"))[:12]
    files += [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    text = "\n\n".join(f.read_text() for f in files)
    prompts = ROOT / "models/pystd/prompts.jsonl"
    if prompts.exists():
        text += "\n\n".join(json.loads(line).get("prompt", "") for line in prompts.read_text().splitlines()[:40])
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--positions", type=int, default=2048)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--sample-every", type=int, default=41)
    args = parser.parse_args()
    path = Path(args.model).resolve()

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = corpus()
    ids = tok(text)["input_ids"]
    # Pieces of the corpus the engine's tokenizer must cut as transformers'
    # does: paragraphs, and runs of spaces, digits and non-ASCII.
    texts = [p for p in text.split("\n\n") if p.strip()][:200] + [
        "x  =   1\n\n\n\tif x:\n        return 12345678", "naïve café — ☃ 🦀 日本語", "  leading and trailing  "]
    windows = [ids[i:i + args.window] for i in range(0, args.positions, args.window)]
    windows = [w for w in windows if len(w) == args.window]

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ref_top1, ref_margin, ref_rows = [], [], []
    position = 0
    with torch.inference_mode():
        for w in windows:
            logits = model(torch.tensor([w])).logits[0].float()
            top2 = logits.topk(2, dim=-1)
            ref_top1 += top2.indices[:, 0].tolist()
            ref_margin += (top2.values[:, 0] - top2.values[:, 1]).tolist()
            for i in range(len(w)):
                if position % args.sample_every == 0:
                    ref_rows.append(logits[i].numpy().copy())
                position += 1
    del model

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "request.json").write_text(json.dumps(
            {"model": str(path), "windows": windows, "sample_every": args.sample_every, "texts": texts}))
        subprocess.run(
            ["cargo", "test", "-q", "-p", "dsi-models", "--test", "gguf", "logits_of_real_windows", "--", "--ignored", "--nocapture"],
            cwd=ROOT, check=True, env={**__import__("os").environ, "DSI_AGREEMENT_DIR": str(work)})
        engine = json.loads((work / "engine.json").read_text())
        engine_top1 = engine["top1"]
        reference_ids = [tok(t)["input_ids"] for t in texts]
        differing = [t for t, ours, theirs in zip(texts, engine["encoded"], reference_ids) if ours != theirs]
        vocab = ref_rows[0].size
        engine_rows = np.fromfile(work / "engine_rows.f32", dtype="<f4").reshape(-1, vocab)

    worst_abs, worst_rel = 0.0, 0.0
    for ours, theirs in zip(engine_rows, ref_rows):
        diff = float(np.abs(ours - theirs).max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / float(np.abs(theirs).max()))
    bound = 2 * worst_abs
    counted = [i for i, m in enumerate(ref_margin) if m > bound]
    agree = sum(engine_top1[i] == ref_top1[i] for i in counted)
    agree_all = sum(a == b for a, b in zip(engine_top1, ref_top1))
    report = {
        "model": path.name,
        "positions": len(ref_top1),
        "sampled_rows": len(ref_rows),
        "worst_abs_logit_error": worst_abs,
        "worst_relative_logit_error": worst_rel,
        "margin_bound": bound,
        "positions_above_bound": len(counted),
        "top1_agreement_above_bound": agree / max(len(counted), 1),
        "top1_agreement_all": agree_all / len(ref_top1),
        "texts_tokenized": len(texts),
        "texts_tokenized_differently": len(differing),
        "first_difference": differing[0][:200] if differing else None,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
