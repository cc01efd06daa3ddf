#!/usr/bin/env python3
"""Make small random checkpoints of every family the engine runs (Llama,
Qwen2, Qwen3, Phi-3, StarCoder) with Hugging Face transformers, and record
transformers' own logits and greedy continuations for them.

These are the independent reference that crates/dsi-models is tested
against. CI does not run this script; it only reads what it wrote.

Regenerate (PyTorch on CPU; outside the repository):

    python3 -m venv /tmp/dsi-fixtures && /tmp/dsi-fixtures/bin/pip install torch transformers tokenizers safetensors sentencepiece protobuf
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
import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    GPTBigCodeConfig,
    GPTBigCodeForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from transformers.convert_slow_tokenizer import SentencePieceExtractor

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

# Text a byte-level BPE handles by construction and a SentencePiece
# vocabulary only by byte fallback.
UNICODE_LINE = "Hello wörld! naïve café — ☃\n"
SPM_PROMPTS = PROMPTS + ["Hello wörld! ☃ and 🦀, naïve  café"]


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


def train_sentencepiece_tokenizer(vocab_size: int, workdir: Path) -> tuple[Tokenizer, Path]:
    """A Llama-2/Vicuna-style tokenizer: a SentencePiece BPE model with byte
    fallback, converted to tokenizer.json the way the Hub's Llama-2 file is
    laid out (Prepend/Replace normalizer, no pre-tokenizer, byte-fallback
    decoder, a template that adds <s>). Returns it and the .model file."""
    prefix = workdir / "spm"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([CORPUS + UNICODE_LINE] * 4), model_prefix=str(prefix),
        vocab_size=vocab_size, model_type="bpe", byte_fallback=True, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2)
    extracted = SentencePieceExtractor(f"{prefix}.model").extract(models.BPE)
    tok = Tokenizer(models.BPE(vocab=extracted["vocab"], merges=extracted["merges"], unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok, Path(f"{prefix}.model")


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
            if ("norm" in name or ".ln_" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "norm" in name or ".ln_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def make(out: Path, name: str, model, tok: Tokenizer, *, dtype=torch.float32, shard=False, hf4=False,
         prompts=PROMPTS, reference_tokenizer=None) -> None:
    """reference_tokenizer: a function text -> (ids, decode) that must agree
    with `tok` (transformers' own tokenizer loaded from the folder); the
    decoded prompts and continuations are recorded."""
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
    if reference_tokenizer is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
             "add_bos_token": True, "add_eos_token": False, "legacy": True}, indent=1))
        hf_tok = AutoTokenizer.from_pretrained(folder)

    expected = {"new_tokens": NEW_TOKENS, "prompts": []}
    logits_tensors = {}
    with torch.no_grad():
        for i, text in enumerate(prompts):
            ids = tok.encode(text).ids
            if reference_tokenizer is not None:
                ref_ids, _ = reference_tokenizer(text)
                hf_ids = hf_tok(text)["input_ids"]
                assert ids == ref_ids == hf_ids, (text, ids, ref_ids, hf_ids)
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
            record = {
                "text": text,
                "ids": ids,
                "greedy": out_ids,
                "min_top2_margin": float((top2[:, 0] - top2[:, 1]).min()),
            }
            if reference_tokenizer is not None:
                _, decode = reference_tokenizer(text)
                record["decoded_prompt"] = hf_tok.decode(ids, skip_special_tokens=True)
                record["decoded_greedy"] = hf_tok.decode(out_ids, skip_special_tokens=True)
                assert record["decoded_prompt"] == decode(ids), (record["decoded_prompt"], decode(ids))
            expected["prompts"].append(record)
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

    # 5. Qwen3: per-head query/key RMSNorm, head_dim != hidden / heads, no biases.
    m = Qwen3ForCausalLM(Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                     tie_word_embeddings=False, rope_parameters={"rope_type": "default",
                                                                                "rope_theta": 1000000.0},
                                     **common))
    scale_weights(m, 0.15)
    make(out, "qwen3-qknorm", m, tok)

    # 6. Phi-3 with LongRoPE (the 128k variants' kind: extended context 8x the
    # pretrained one, so cos/sin carry an attention factor), fused qkv and
    # gate_up, 2:1 GQA, transformers 4 config ("rope_scaling" with "type").
    # Prompts stay within the pretrained context, where transformers uses
    # the short factors for every position as the engine does.
    half = 16 // 2
    m = Phi3ForCausalLM(Phi3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   original_max_position_embeddings=64,
                                   rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                    "short_factor": [1.0 + 0.25 * i for i in range(half)],
                                                    "long_factor": [2.0 + 0.5 * i for i in range(half)]},
                                   tie_word_embeddings=False, pad_token_id=1,
                                   **{**common, "max_position_embeddings": 512}))
    scale_weights(m, 0.15)
    make(out, "phi3-longrope", m, tok, hf4=True)

    # 7. Phi-3 with plain RoPE, tied embeddings and a sliding window of 16
    # positions, narrower than the longer prompts.
    m = Phi3ForCausalLM(Phi3Config(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=3, num_key_value_heads=3, sliding_window=16,
                                   tie_word_embeddings=True, pad_token_id=1, **common))
    scale_weights(m, 0.15)
    make(out, "phi3-tied-window", m, tok)

    # 8. StarCoder (gpt_bigcode): multi-query attention, LayerNorm with
    # bias, gelu_pytorch_tanh MLP with biases, learned positions, tied head.
    m = GPTBigCodeForCausalLM(GPTBigCodeConfig(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4,
                                               n_positions=256, multi_query=True,
                                               activation_function="gelu_pytorch_tanh",
                                               bos_token_id=0, eos_token_id=1))
    scale_weights(m, 0.15)
    make(out, "starcoder-mqa", m, tok)

    # 9. A Llama-2/Vicuna-style SentencePiece tokenizer (byte fallback, BOS
    # added by the template), checked against sentencepiece itself and
    # transformers' tokenizer; decoded text recorded.
    import tempfile
    with tempfile.TemporaryDirectory() as workdir:
        sp_tok, sp_model = train_sentencepiece_tokenizer(400, Path(workdir))
        sp = spm.SentencePieceProcessor(model_file=str(sp_model))

        def sentencepiece_reference(text):
            return [sp.bos_id()] + sp.encode(text), lambda ids: sp.decode([i for i in ids if i > 2])

        m = LlamaForCausalLM(LlamaConfig(vocab_size=sp_tok.get_vocab_size(), bos_token_id=1, eos_token_id=2,
                                         max_position_embeddings=256, hidden_size=48, intermediate_size=96,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         tie_word_embeddings=False))
        scale_weights(m, 0.15)
        make(out, "llama2-sentencepiece", m, sp_tok, hf4=True, prompts=SPM_PROMPTS,
             reference_tokenizer=sentencepiece_reference)

    # 10. A Qwen2-style pair whose embedding matrices are padded to
    # different sizes (the tokenizer has `vocab` tokens): the target has 64
    # padding rows more than the drafter. The drafter is the target's
    # weights on the shared rows, perturbed, so it agrees often but not
    # always.
    m = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=1,
                                     tie_word_embeddings=False, **{**common, "vocab_size": vocab + 64}))
    scale_weights(m, 0.15)
    make(out, "qwen2-padded-target", m, tok)
    d = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=1,
                                     tie_word_embeddings=False, **{**common, "vocab_size": vocab + 8}))
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        target = dict(m.named_parameters())
        for name, p in d.named_parameters():
            source = target[name][: p.shape[0]] if "embed_tokens" in name or "lm_head" in name else target[name]
            p.copy_(source + 0.01 * torch.randn(p.shape, generator=g))
    make(out, "qwen2-padded-drafter", d, tok)


if __name__ == "__main__":
    main()
