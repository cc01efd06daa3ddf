#!/usr/bin/env python3
"""Write small GGUF files with the `gguf` package (llama.cpp's own writer)
and record what transformers computes from them, the independent reference
crates/dsi-models/tests/gguf.rs is held to.

Every file comes from a transformers model: the existing fixtures
(scripts/make_fixtures.py) for the float formats and the 32-weight block
formats, and a Qwen2 model 256 wide for the k-quants (their blocks are 256
weights). Weights go in as llama.cpp's converter writes them (the query and
key rows of `llama` models permuted for its rotary layout); k-quants are
quantized here (gguf-py dequantizes them but cannot quantize them), the
other formats by gguf-py. transformers then loads each file the way a user
would (`from_pretrained(dir, gguf_file=...)`, which dequantizes to f32),
and its logits, greedy continuations and tokenizer ids are recorded.

CI does not run this script; it only reads what it wrote. Regenerate (the
venv of make_fixtures.py, plus gguf):

    /tmp/dsi-fixtures/bin/pip install gguf
    /tmp/dsi-fixtures/bin/python scripts/make_gguf_fixtures.py crates/dsi-models/tests/fixtures
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

SEED = 1234
NEW_TOKENS = 12
PROMPTS = [
    "def fibonacci(n):",
    "import os\nfor name in os.listdir('.'):\n    print(name)",
]
# Texts whose ids the engine's tokenizer must match: code, non-ASCII,
# emoji, runs of spaces and newlines, digits.
TEXTS = PROMPTS + [
    "Hello wörld! naïve café — ☃ and 🦀",
    "x  =   1\n\n\n\tif x:\n        return 12345",
    "  leading spaces and trailing   ",
    "<s> not special </s>",
]


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (llama arch)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --- k-quant quantizers (valid blocks, not llama.cpp's optimal search) ---

def pack_scales_k4(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and minimums into 12 bytes (ggml's get_scale_min_k4 inverse)."""
    q = np.zeros(12, dtype=np.uint8)
    for j in range(4):
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
        q[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6)
        q[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4)
    return q


def quantize_k_min(block: np.ndarray, bits: int):
    """Q4_K / Q5_K: 8 sub-blocks of 32 with a 6-bit scale and minimum each."""
    top = (1 << bits) - 1
    subs = block.reshape(8, 32)
    lo = np.minimum(subs.min(axis=1), 0.0)
    hi = subs.max(axis=1)
    scale = (hi - lo) / top
    mins = -lo
    d = max(scale.max() / 63, 1e-8)
    dmin = max(mins.max() / 63, 1e-8)
    d16, dmin16 = np.float16(d), np.float16(dmin)
    sc = np.clip(np.round(scale / float(d16)), 1, 63).astype(np.uint8)
    mn = np.clip(np.round(mins / float(dmin16)), 0, 63).astype(np.uint8)
    eff_d = float(d16) * sc.astype(np.float32)
    eff_m = float(dmin16) * mn.astype(np.float32)
    q = np.clip(np.round((subs + eff_m[:, None]) / eff_d[:, None]), 0, top).astype(np.uint8).reshape(256)
    return d16, dmin16, pack_scales_k4(sc, mn), q


def quantize_q4_k(block: np.ndarray) -> bytes:
    d, dmin, scales, q = quantize_k_min(block, 4)
    qs = np.zeros(128, dtype=np.uint8)
    for c in range(4):
        qs[32 * c:32 * c + 32] = (q[64 * c:64 * c + 32] & 0xF) | (q[64 * c + 32:64 * c + 64] << 4)
    return d.tobytes() + dmin.tobytes() + scales.tobytes() + qs.tobytes()


def quantize_q5_k(block: np.ndarray) -> bytes:
    d, dmin, scales, q = quantize_k_min(block, 5)
    qs = np.zeros(128, dtype=np.uint8)
    qh = np.zeros(32, dtype=np.uint8)
    for c in range(4):
        a, b = q[64 * c:64 * c + 32], q[64 * c + 32:64 * c + 64]
        qs[32 * c:32 * c + 32] = (a & 0xF) | ((b & 0xF) << 4)
        qh |= ((a >> 4) << (2 * c)).astype(np.uint8) | ((b >> 4) << (2 * c + 1)).astype(np.uint8)
    return d.tobytes() + dmin.tobytes() + scales.tobytes() + qh.tobytes() + qs.tobytes()


def quantize_q6_k(block: np.ndarray) -> bytes:
    subs = block.reshape(16, 16)
    scale = np.abs(subs).max(axis=1) / 31
    d = np.float16(max(scale.max() / 127, 1e-8))
    sc = np.clip(np.round(scale / float(d)), 1, 127).astype(np.int8)
    eff = float(d) * sc.astype(np.float32)
    q = (np.clip(np.round(subs / eff[:, None]), -32, 31) + 32).astype(np.uint8).reshape(256)
    ql = np.zeros(128, dtype=np.uint8)
    qh = np.zeros(64, dtype=np.uint8)
    for h in range(2):
        w = q[128 * h:128 * h + 128]
        ql[64 * h:64 * h + 32] = (w[0:32] & 0xF) | ((w[64:96] & 0xF) << 4)
        ql[64 * h + 32:64 * h + 64] = (w[32:64] & 0xF) | ((w[96:128] & 0xF) << 4)
        qh[32 * h:32 * h + 32] = (w[0:32] >> 4) | ((w[32:64] >> 4) << 2) | ((w[64:96] >> 4) << 4) | ((w[96:128] >> 4) << 6)
    return ql.tobytes() + qh.tobytes() + sc.tobytes() + d.tobytes()


K_QUANTIZERS = {Q.Q4_K: quantize_q4_k, Q.Q5_K: quantize_q5_k, Q.Q6_K: quantize_q6_k}


def quantize(w: np.ndarray, qtype) -> np.ndarray:
    """Rows of `w` as qtype blocks (uint8, [rows, row bytes])."""
    if qtype in K_QUANTIZERS:
        rows = [b"".join(K_QUANTIZERS[qtype](row[i:i + 256]) for i in range(0, row.size, 256)) for row in w]
        out = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(w.shape[0], -1)
        back = gguf.quants.dequantize(out, qtype)
        assert np.abs(back - w).max() <= 0.2 * np.abs(w).max() + 1e-6, qtype
        return out
    return gguf.quants.quantize(w, qtype)


# --- the writer ---

GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER_NAMES[module]}.{kind}"


def write_gguf(path: Path, arch: str, cfg: dict, tensors: dict, tokenizer: dict, qtypes: dict) -> None:
    """tensors: HF name -> f32 array; qtypes: GGUF name -> type for 2-D weights (default F32)."""
    w = gguf.GGUFWriter(str(path), arch)
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // heads)
    if cfg.get("rope_scaling_factor"):
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg["rope_scaling_factor"])
    for key, value in tokenizer.items():
        getattr(w, key)(value)
    for hf, value in tensors.items():
        name = gguf_name(hf)
        value = value.astype(np.float32)
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            value = permute(value, heads if ".attn_q." in name else kv_heads)
        qtype = qtypes.get(name, Q.F32) if value.ndim == 2 else Q.F32
        if qtype == Q.F32:
            w.add_tensor(name, value)
        elif qtype == Q.F16:
            w.add_tensor(name, value.astype(np.float16))
        elif qtype == Q.BF16:
            w.add_tensor(name, gguf.quants.quantize(value, Q.BF16), raw_dtype=Q.BF16)
        else:
            w.add_tensor(name, quantize(value, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def byte_level_tokenizer(folder: Path, pre: str) -> dict:
    """The writer calls of a fixture's byte-level BPE tokenizer.json."""
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [None] * (max(vocab.values()) + 1)
    for t, i in vocab.items():
        tokens[i] = t
    types = [1] * len(tokens)
    for added in tok["added_tokens"]:
        types[added["id"]] = 3 if added["special"] else 4
    merges = [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
    return {"add_tokenizer_model": "gpt2", "add_tokenizer_pre": pre, "add_token_list": tokens,
            "add_token_types": types, "add_token_merges": merges, "add_bos_token_id": 0,
            "add_eos_token_id": 1, "add_add_bos_token": False}


def sentencepiece_tokenizer(folder: Path) -> dict:
    """A Llama-2-style tokenizer as llama.cpp writes it: pieces, scores, types."""
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    # Scores that reproduce the merge order: earlier merges score higher.
    rank = {"".join(m if isinstance(m, list) else m.split(" ")): r for r, m in enumerate(tok["model"]["merges"])}
    scores = [-float(rank.get(t, len(rank) + i)) for i, t in enumerate(tokens)]
    types = [6 if t.startswith("<0x") and t.endswith(">") else 1 for t in tokens]
    types[0] = 2
    types[1] = types[2] = 3
    return {"add_tokenizer_model": "llama", "add_tokenizer_pre": "default", "add_token_list": tokens,
            "add_token_scores": scores, "add_token_types": types, "add_bos_token_id": 1,
            "add_eos_token_id": 2, "add_unk_token_id": 0, "add_add_bos_token": True,
            "add_add_space_prefix": True}


# A ChatML template (Qwen's shape, shortened), for the files that carry one.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def record(out: Path, name: str, model_folder: Path | None = None, token_folder: Path | None = None) -> None:
    """transformers' view of out/name.gguf: logits, greedy ids, token ids.

    model_folder: compute the logits from the Hugging Face folder the file
    was written from instead (same weights): transformers 5 ignores a GGUF
    file's `rope.scaling` metadata, which llama.cpp applies.
    token_folder: take token ids from the folder's tokenizer.json instead
    (make_fixtures.py checked it against sentencepiece): transformers
    builds SentencePiece files with a Metaspace pre-tokenizer, which splits
    leading spaces differently from sentencepiece and llama.cpp ("  a" is
    two pieces there, three here)."""
    if model_folder is None:
        model = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"{name}.gguf", dtype=torch.float32).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(out, gguf_file=f"{name}.gguf")
    if token_folder is not None:
        from tokenizers import Tokenizer
        reference = Tokenizer.from_file(str(token_folder / "tokenizer.json"))
        tok = lambda text: {"input_ids": reference.encode(text).ids}  # noqa: E731
    expected = {"new_tokens": NEW_TOKENS, "prompts": [], "texts": []}
    logits_tensors = {}
    with torch.no_grad():
        for i, text in enumerate(PROMPTS):
            ids = tok(text)["input_ids"]
            input_ids = torch.tensor([ids])
            logits = model(input_ids).logits[0].float()
            greedy = model.generate(input_ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                                    eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
            top2 = logits.topk(2, dim=-1).values
            expected["prompts"].append({"text": text, "ids": ids, "greedy": greedy,
                                        "min_top2_margin": float((top2[:, 0] - top2[:, 1]).min())})
            logits_tensors[f"logits.{i}"] = logits.contiguous()
    for text in TEXTS:
        expected["texts"].append({"text": text, "ids": tok(text)["input_ids"]})
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
        expected["chat"] = {"messages": CHAT, "text": text, "ids": tok(text)["input_ids"]}
    (out / f"{name}.expected.json").write_text(json.dumps(expected, indent=1))
    save_file(logits_tensors, out / f"{name}.expected.safetensors")
    size = (out / f"{name}.gguf").stat().st_size
    print(f"{name}: {size / 1024:.0f} KiB, margins {[p['min_top2_margin'] for p in expected['prompts']]}")


def from_fixture(fixtures: Path, out: Path, name: str, source: str, arch: str, tokenizer: dict, qtypes) -> None:
    folder = fixtures / source
    cfg = json.loads((folder / "config.json").read_text())
    if isinstance(cfg.get("rope_scaling"), dict) and cfg["rope_scaling"].get("rope_type") == "linear":
        cfg["rope_scaling_factor"] = cfg["rope_scaling"]["factor"]
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    tensors = {}
    for f in sorted(folder.glob("model*.safetensors")):
        tensors.update({k: v.float().numpy() for k, v in load_file(f).items()})
    names = [gguf_name(k) for k in tensors if tensors[k].ndim == 2]
    write_gguf(out / f"{name}.gguf", arch, cfg, tensors, tokenizer,
               {n: qtypes(n) for n in names} if callable(qtypes) else {})
    record(out, name, folder if "rope_scaling_factor" in cfg else None,
           folder if tokenizer["add_tokenizer_model"] == "llama" else None)


def main() -> None:
    fixtures = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/dsi-models/tests/fixtures")
    out = fixtures / "gguf"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(SEED)

    gpt2 = byte_level_tokenizer(fixtures / "llama-gqa", "default")
    # Architectures and float formats.
    from_fixture(fixtures, out, "llama-f32", "llama-gqa", "llama", gpt2, None)
    from_fixture(fixtures, out, "qwen2-f16", "qwen2-bias", "qwen2", byte_level_tokenizer(fixtures / "qwen2-bias", "qwen2"),
                 lambda n: Q.F16)
    from_fixture(fixtures, out, "llama-bf16-linear-rope", "llama-bf16-sharded", "llama", gpt2, lambda n: Q.BF16)
    from_fixture(fixtures, out, "llama-sentencepiece", "llama2-sentencepiece", "llama",
                 sentencepiece_tokenizer(fixtures / "llama2-sentencepiece"), lambda n: Q.F16)
    # The 32-weight block formats (rows of 64 and 128).
    for qtype in [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]:
        from_fixture(fixtures, out, f"llama-{qtype.name.lower()}", "llama-gqa", "llama", gpt2, lambda n, q=qtype: q)

    # The k-quants: a Qwen2 model 256 wide. Q4_K stores the values in Q6_K
    # and the MLP's down projection in Q5_K, as Q4_K_M files mix them.
    model = Qwen2ForCausalLM(Qwen2Config(
        hidden_size=256, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=1, vocab_size=320, max_position_embeddings=256, bos_token_id=0,
        eos_token_id=1, tie_word_embeddings=False, rms_norm_eps=1e-6))
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    cfg = model.config.to_dict()
    cfg["rope_theta"] = 1000000.0
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    qwen_tok = {**byte_level_tokenizer(fixtures / "qwen2-bias", "qwen2"), "add_chat_template": CHAT_TEMPLATE}
    mixed = {Q.Q4_K: lambda n: Q.Q6_K if ".attn_v." in n else Q.Q5_K if ".ffn_down." in n else Q.Q4_K,
             Q.Q5_K: lambda n: Q.Q5_K, Q.Q6_K: lambda n: Q.Q6_K}
    for qtype, pick in mixed.items():
        name = f"qwen2-{qtype.name.lower()}"
        names = [gguf_name(k) for k in tensors if tensors[k].ndim == 2]
        write_gguf(out / f"{name}.gguf", "qwen2", cfg, tensors, qwen_tok, {n: pick(n) for n in names})
        record(out, name)

    broken(out)


def broken(out: Path) -> None:
    """Files the engine must refuse with one line each."""
    good = (out / "llama-q4_0.gguf").read_bytes()
    (out / "broken-truncated.gguf").write_bytes(good[: len(good) * 2 // 3])
    reader = gguf.GGUFReader(out / "llama-q4_0.gguf")
    # The type of the first tensor set to Q2_K (ggml type 10).
    first = reader.tensors[0]
    type_at = first.field.offset + sum(p.nbytes for p in first.field.parts[:-2])
    bad = bytearray(good)
    bad[type_at:type_at + 4] = (10).to_bytes(4, "little")
    (out / "broken-unknown-type.gguf").write_bytes(bytes(bad))
    # A key renamed: the embedding width is missing.
    key = b"llama.embedding_length"
    (out / "broken-missing-key.gguf").write_bytes(good.replace(key, b"llama.embedding_lengtX", 1))
    # The MLP width in the metadata disagrees with the tensors.
    ff = reader.fields["llama.feed_forward_length"]
    at = ff.offset + sum(p.nbytes for p in ff.parts[:-1])
    bad = bytearray(good)
    bad[at:at + 4] = (96).to_bytes(4, "little")
    (out / "broken-wrong-shape.gguf").write_bytes(bytes(bad))


if __name__ == "__main__":
    main()
