#!/usr/bin/env python3
"""Make small random Llama-family checkpoints with Hugging Face transformers,
and record transformers' own logits and greedy continuations for them.

These are the independent reference that crates/dsi-models is tested
against. CI does not run this script; it only reads what it wrote.

Regenerate (PyTorch on CPU; outside the repository):

    python3 -m venv /tmp/dsi-fixtures && /tmp/dsi-fixtures/bin/pip install torch transformers tokenizers safetensors
    /tmp/dsi-fixtures/bin/python scripts/make_fixtures.py crates/dsi-models/tests/fixtures

Each fixture folder holds config.json, the weights, tokenizer.json,
generation_config.json, and expected.json / expected.safetensors:
token ids of a few prompts, transformers' logits at every position (f32),
and its greedy continuation.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

SEED = 1234
PROMPTS = [
    "def fibonacci(n):",
    "import os\nfor name in os.listdir('.'):\n    print(name)",
    "class Stack:\n    def push(self, item):",
]
NEW_TOKENS = 12

CORPUS = """
def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()

import os
for name in sorted(os.listdir('.')):
    print(name, len(name))
"""


def train_tokenizer(vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    return tok


def to_transformers4_config(path: Path) -> None:
    """Rewrite rope_parameters as rope_theta + rope_scaling, the layout most
    checkpoints on the Hub still use."""
    cfg = json.loads(path.read_text())
    params = cfg.pop("rope_parameters", None) or {}
    cfg["rope_theta"] = params.pop("rope_theta", 10000.0)
    if params.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = params
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True))


def scale_weights(model: torch.nn.Module, std: float) -> None:
    """Wider than the default init, so logits have clear argmax margins."""
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def make(out: Path, name: str, model, tok: Tokenizer, *, dtype=torch.float32, shard=False, hf4=False) -> None:
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.eval()
    if dtype != torch.float32:
        # Store in dtype; compute the reference in f32 from the rounded weights,
        # which is what the engine does when it loads them. Only parameters are
        # rounded: buffers such as the rotary inv_freq stay exact.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).to(torch.float32))
    model.save_pretrained(folder, max_shard_size="40KB" if shard else "5GB")
    if dtype != torch.float32:
        # save_pretrained wrote f32: store the rounded weights in dtype.
        for f in folder.glob("*.safetensors"):
            from safetensors.torch import load_file

            tensors = {k: v.to(dtype).contiguous() for k, v in load_file(f).items()}
            save_file(tensors, f, metadata={"format": "pt"})
    if hf4:
        to_transformers4_config(folder / "config.json")
    tok.save(str(folder / "tokenizer.json"))

    expected = {"new_tokens": NEW_TOKENS, "prompts": []}
    logits_tensors = {}
    with torch.no_grad():
        for i, text in enumerate(PROMPTS):
            ids = tok.encode(text).ids
            input_ids = torch.tensor([ids])
            logits = model(input_ids).logits[0].float()
            out_ids = model.generate(
                input_ids,
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )[0, len(ids):].tolist()
            top2 = logits.topk(2, dim=-1).values
            expected["prompts"].append(
                {
                    "text": text,
                    "ids": ids,
                    "greedy": out_ids,
                    "min_top2_margin": float((top2[:, 0] - top2[:, 1]).min()),
                }
            )
            logits_tensors[f"logits.{i}"] = logits.contiguous()
    (folder / "expected.json").write_text(json.dumps(expected, indent=1))
    save_file(logits_tensors, folder / "expected.safetensors")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"{name}: {size / 1024:.0f} KiB, margins {[p['min_top2_margin'] for p in expected['prompts']]}")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/dsi-models/tests/fixtures")
    torch.manual_seed(SEED)
    tok = train_tokenizer(320)
    vocab = tok.get_vocab_size()
    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=1, max_position_embeddings=256)

    # 1. Llama with grouped-query attention, separate LM head, transformers 4 config.
    m = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                     tie_word_embeddings=False, **common))
    scale_weights(m, 0.15)
    make(out, "llama-gqa", m, tok, hf4=True)

    # 2. Tied embeddings, llama3 rope scaling, explicit head_dim != hidden / heads.
    m = LlamaForCausalLM(LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                     tie_word_embeddings=True,
                                     rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                      "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0,
                                                      "original_max_position_embeddings": 16},
                                     **common))
    scale_weights(m, 0.15)
    make(out, "llama-tied-llama3", m, tok)

    # 3. Qwen2: q/k/v biases, 4 query heads per key/value head.
    m = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=1,
                                     tie_word_embeddings=False, **common))
    scale_weights(m, 0.15)
    make(out, "qwen2-bias", m, tok)

    # 4. bf16 storage, linear rope scaling, sharded weights.
    m = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=2, num_key_value_heads=2,
                                     rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                                      "factor": 2.0},
                                     tie_word_embeddings=False, **common))
    scale_weights(m, 0.15)
    make(out, "llama-bf16-sharded", m, tok, dtype=torch.bfloat16, shard=True, hf4=True)


if __name__ == "__main__":
    main()
