//! A [`ModelConfig`] from a GGUF file's metadata (`{arch}.*` keys) and
//! tensor table, for the `llama` and `qwen2` architectures.
//!
//! The metadata is turned into the `config.json` transformers would have
//! written and validated by the same code as a folder's, so a GGUF file
//! is refused for exactly what a folder would be.

use super::metadata::Metadata;
use super::parse::Parsed;
use crate::config::ModelConfig;
use serde_json::{Value, json};

/// The architectures (`general.architecture`) the engine runs.
pub const ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// The configuration the metadata describes, or what is missing or
/// unsupported.
pub(super) fn model_config(parsed: &Parsed) -> Result<ModelConfig, String> {
    let json = config_json(parsed)?;
    ModelConfig::from_json(&json.to_string()).map_err(|e| format!("{e} (from its metadata)"))
}

/// The metadata as a transformers `config.json`.
pub(super) fn config_json(parsed: &Parsed) -> Result<Value, String> {
    let m = Metadata(&parsed.metadata);
    let arch = m.required_string("general.architecture")?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(format!(
            "general.architecture is {arch:?}; the engine runs {} from GGUF files",
            ARCHITECTURES.join(" and ")
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = m.required_usize(&key("embedding_length"))?;
    let heads = m.required_usize(&key("attention.head_count"))?;
    let kv_heads = m.usize(&key("attention.head_count_kv"))?.unwrap_or(heads);
    let head_dim = match m.usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if heads > 0 => hidden / heads,
        None => return Err(format!("{} is 0", key("attention.head_count"))),
    };
    if let Some(rotary) = m.usize(&key("rope.dimension_count"))?
        && rotary != head_dim
    {
        return Err(format!(
            "{} is {rotary} but heads are {head_dim} wide: partial rotary embeddings are not supported",
            key("rope.dimension_count")
        ));
    }
    if parsed.tensors.contains_key("rope_freqs.weight") {
        return Err(
            "it scales rotary frequencies per band (rope_freqs.weight, Llama 3.1's rope scaling), \
             which the engine does not read from GGUF files; use the Hugging Face folder"
                .into(),
        );
    }
    let embed = parsed
        .tensors
        .get("token_embd.weight")
        .ok_or("the tensor token_embd.weight is missing")?;
    let vocab = embed.shape[0];
    let mut config = json!({
        "model_type": arch,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": m.required_usize(&key("feed_forward_length"))?,
        "num_hidden_layers": m.required_usize(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": m.f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
        "rope_theta": m.f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
        "max_position_embeddings": m.required_usize(&key("context_length"))?,
        "tie_word_embeddings": !parsed.tensors.contains_key("output.weight"),
        "attention_bias": parsed.tensors.contains_key("blk.0.attn_q.bias"),
    });
    if let Some(scaling) = rope_scaling(&m, arch)? {
        config["rope_scaling"] = scaling;
    }
    for (field, gguf) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
    ] {
        if let Some(id) = m.usize(gguf)? {
            config[field] = json!(id);
        }
    }
    Ok(config)
}

/// `{arch}.rope.scaling.*` as transformers' `rope_scaling`.
fn rope_scaling(m: &Metadata<'_>, arch: &str) -> Result<Option<Value>, String> {
    let kind = m.string(&format!("{arch}.rope.scaling.type"))?;
    match kind {
        None | Some("none") => Ok(None),
        Some("linear") => {
            let key = format!("{arch}.rope.scaling.factor");
            let factor = m
                .f64(&key)?
                .ok_or_else(|| format!("the metadata key {key} is missing"))?;
            Ok(Some(json!({"rope_type": "linear", "factor": factor})))
        }
        Some(other) => Err(format!(
            "{arch}.rope.scaling.type is {other:?}; the engine runs none and linear from GGUF files"
        )),
    }
}
