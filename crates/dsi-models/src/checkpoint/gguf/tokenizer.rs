//! The tokenizer a GGUF file describes (`tokenizer.ggml.*`), rebuilt as the
//! `tokenizers` crate's `Tokenizer`, so everything downstream is what a
//! folder's `tokenizer.json` gives.
//!
//! - `gpt2`: byte-level BPE from `tokens` and `merges`, split first by the
//!   regular expression llama.cpp names in `tokenizer.ggml.pre` (the same
//!   one the model's Hugging Face `tokenizer.json` uses).
//! - `llama`: SentencePiece BPE with byte fallback (Llama 2, Gemma): its
//!   merges are not stored, only each piece's score, so they are derived
//!   as transformers' `SentencePieceExtractor` does: every split of a
//!   piece into two pieces of the vocabulary, ranked by the whole piece's
//!   score.
//!
//! Control tokens (`token_type` 3) are special (skipped when decoding);
//! user-defined ones (4) are added but printed.

use super::metadata::Metadata;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The pre-tokenizers (`tokenizer.ggml.pre`) the engine knows.
const PRE_TOKENIZERS: &str = "qwen2, smollm, llama-bpe, default, gpt2";

/// GPT-2's split (`default`).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Qwen2's split: single digits, no leading space on letters.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split: digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.token_type` values.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The tokenizer of the metadata.
pub(super) fn from_metadata(m: &Metadata<'_>) -> Result<tokenizers::Tokenizer, String> {
    let json = tokenizer_json(m)?;
    tokenizers::Tokenizer::from_bytes(json.to_string()).map_err(|e| e.to_string())
}

/// The metadata as a `tokenizer.json`.
fn tokenizer_json(m: &Metadata<'_>) -> Result<Value, String> {
    let model = m.required_string("tokenizer.ggml.model")?;
    let tokens = m
        .strings("tokenizer.ggml.tokens")?
        .ok_or("the metadata key tokenizer.ggml.tokens is missing")?;
    let types = m.numbers("tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        ));
    }
    let kind = |id: usize| types.get(id).map_or(1, |&t| t as i64);
    let added: Vec<Value> = (0..tokens.len())
        .filter(|&id| matches!(kind(id), CONTROL | USER_DEFINED))
        .map(|id| {
            json!({"id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": kind(id) == CONTROL})
        })
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), json!(id)))
        .collect();
    let mut json = match model {
        "gpt2" => byte_level(m, vocab)?,
        "llama" => sentencepiece(m, tokens, vocab)?,
        other => {
            return Err(format!(
                "tokenizer.ggml.model is {other:?}; the engine reads gpt2 (byte-level BPE) and llama (SentencePiece BPE)"
            ));
        }
    };
    json["version"] = json!("1.0");
    json["truncation"] = Value::Null;
    json["padding"] = Value::Null;
    json["added_tokens"] = Value::Array(added);
    if m.bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(model == "llama")
        && let Some(bos) = m.usize("tokenizer.ggml.bos_token_id")?
    {
        let token = tokens
            .get(bos)
            .ok_or_else(|| format!("tokenizer.ggml.bos_token_id {bos} is not a token"))?;
        json["post_processor"] = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {token: {"id": token, "ids": [bos], "tokens": [token]}},
        });
    }
    Ok(json)
}

/// Byte-level BPE with the split `tokenizer.ggml.pre` names.
fn byte_level(m: &Metadata<'_>, vocab: serde_json::Map<String, Value>) -> Result<Value, String> {
    let merges: Vec<Value> = m
        .strings("tokenizer.ggml.merges")?
        .ok_or("the metadata key tokenizer.ggml.merges is missing")?
        .iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| format!("the merge {merge:?} is not two tokens"))
        })
        .collect::<Result<_, _>>()?;
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let pre = m.string("tokenizer.ggml.pre")?.unwrap_or("default");
    let (normalizer, pre_tokenizer) = match pre {
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
        ),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "default" | "gpt2" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(GPT2_SPLIT), byte_level(false)]}),
        ),
        other => {
            return Err(format!(
                "tokenizer.ggml.pre is {other:?}; the engine knows {PRE_TOKENIZERS}"
            ));
        }
    };
    Ok(json!({
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": Value::Null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    }))
}

/// SentencePiece BPE: merges derived from the scores, byte fallback,
/// spaces as `▁` (and one prepended, if `add_space_prefix`).
fn sentencepiece(
    m: &Metadata<'_>,
    tokens: &[String],
    vocab: serde_json::Map<String, Value>,
) -> Result<Value, String> {
    let scores = m
        .numbers("tokenizer.ggml.scores")?
        .ok_or("the metadata key tokenizer.ggml.scores is missing")?;
    if scores.len() != tokens.len() {
        return Err(format!(
            "tokenizer.ggml.scores has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        ));
    }
    let merges: Vec<Value> = derived_merges(tokens, &scores)
        .into_iter()
        .map(|(a, b)| json!([a, b]))
        .collect();
    let unk = match m.usize("tokenizer.ggml.unknown_token_id")? {
        Some(id) => Some(
            tokens
                .get(id)
                .ok_or_else(|| format!("tokenizer.ggml.unknown_token_id {id} is not a token"))?
                .clone(),
        ),
        None => None,
    };
    let prefix = m.bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    Ok(json!({
        "normalizer": normalizer,
        "pre_tokenizer": Value::Null,
        "post_processor": Value::Null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    }))
}

/// Every split of a piece into two pieces of the vocabulary, ranked by the
/// piece's score (highest first), then by the lengths of its halves
/// (longest first); within a piece by the halves' ids. transformers'
/// `generate_merges` order, which its stable sort keeps for equal keys.
fn derived_merges(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(usize, usize, f64, usize, usize)> = Vec::new();
    for (piece, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<(usize, usize)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?))
            })
            .collect();
        local.sort();
        for (l, r) in local {
            let (ll, lr) = (tokens[l].chars().count(), tokens[r].chars().count());
            merges.push((l, r, score, ll, lr));
        }
    }
    // Stable: equal keys keep the order above.
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges
        .into_iter()
        .map(|(l, r, ..)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

/// Tokens llama.cpp ends a turn at when they are control tokens, beside
/// the ids the metadata names.
const END_OF_TURN_TEXTS: [&str; 9] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
];

/// EOS, EOT and EOM ids, and the control tokens of [`END_OF_TURN_TEXTS`].
pub(super) fn end_of_turn_ids(m: &Metadata<'_>) -> Vec<u32> {
    let mut ids: Vec<u32> = [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ]
    .iter()
    .filter_map(|k| m.usize(k).ok().flatten())
    .map(|id| id as u32)
    .collect();
    let tokens = m
        .strings("tokenizer.ggml.tokens")
        .ok()
        .flatten()
        .unwrap_or(&[]);
    let types = m
        .numbers("tokenizer.ggml.token_type")
        .ok()
        .flatten()
        .unwrap_or_default();
    for (id, token) in tokens.iter().enumerate() {
        let control = types.get(id).is_some_and(|&t| t as i64 == CONTROL);
        if control && END_OF_TURN_TEXTS.contains(&token.as_str()) && !ids.contains(&(id as u32)) {
            ids.push(id as u32);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_whole_pieces_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // "bc" scores higher than "ab", "abc" lowest.
        let scores = [0.0, 0.0, 0.0, -1.0, -3.0, -0.5];
        let merges = derived_merges(&tokens, &scores);
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("ab", "c"), ("a", "bc")]);
    }
}
