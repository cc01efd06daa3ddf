//! `tokenizer.json` through the `tokenizers` crate.

use crate::{ModelError, Result};
use dsi_core::TokenId;
use std::path::{Path, PathBuf};

/// Text to token ids and back.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "the tokenizer (tokenizer.json, as saved by Hugging Face tokenizers)",
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// A tokenizer built in memory (from a GGUF file's metadata); `name`
    /// is what messages call it.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, name: &str) -> Self {
        Self {
            inner,
            path: name.into(),
        }
    }

    /// The token string of `id`, if the vocabulary has it.
    pub fn token(&self, id: TokenId) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Loads a tokenizer from the bytes of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| ModelError::Tokenizer {
                path: "tokenizer.json".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            inner,
            path: "tokenizer.json".into(),
        })
    }

    /// Token ids of `text`, with the tokenizer's special tokens (e.g. BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        let encoding = self.inner.encode(text, true).map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[TokenId]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| self.error(e))
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<TokenId> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One past the highest token id (added tokens included): the ids the
    /// tokenizer can decode.
    pub fn id_range(&self) -> usize {
        self.inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1)
    }

    /// Where `other` maps tokens to ids differently, `None` when both map
    /// every token alike: the first id (in order) whose token differs or
    /// that only one of them has, described for a message.
    pub fn first_difference(&self, other: &TextTokenizer) -> Option<String> {
        let by_id = |t: &TextTokenizer| -> Vec<Option<String>> {
            let vocab = t.inner.get_vocab(true);
            let mut tokens = vec![None; vocab.values().max().map_or(0, |&id| id as usize + 1)];
            for (token, id) in vocab {
                tokens[id as usize] = Some(token);
            }
            tokens
        };
        let (mine, theirs) = (by_id(self), by_id(other));
        let shown = |t: Option<&Option<String>>| match t {
            Some(Some(token)) => format!("{token:?}"),
            _ => "no token".to_string(),
        };
        (0..mine.len().max(theirs.len()))
            .find(|&id| mine.get(id) != theirs.get(id))
            .map(|id| {
                format!(
                    "id {id} is {} in one and {} in the other ({} and {} tokens)",
                    shown(mine.get(id)),
                    shown(theirs.get(id)),
                    self.vocab_size(),
                    other.vocab_size()
                )
            })
    }

    fn error(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// A `tokenizer.json` whose vocabulary is padded to `vocab_size` ids, for a
/// model with more embedding rows than the tokenizer has tokens (random
/// checkpoints of a real shape). Text encodes as before; an added id `n`
/// decodes as `<|id:n|>`. Only BPE and word-level vocabularies are padded.
pub fn padded_tokenizer_json(json: &[u8], vocab_size: usize) -> Result<Vec<u8>> {
    let invalid = |reason: String| ModelError::Tokenizer {
        path: "tokenizer.json".into(),
        reason,
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
    let highest_added = value["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_u64())
        .max();
    let vocab = value["model"]["vocab"]
        .as_object_mut()
        .ok_or_else(|| invalid("its model has no token-to-id vocabulary to pad".into()))?;
    let next = vocab
        .values()
        .filter_map(serde_json::Value::as_u64)
        .chain(highest_added)
        .max()
        .map_or(0, |id| id as usize + 1);
    for id in next..vocab_size {
        vocab.insert(format!("<|id:{id}|>"), id.into());
    }
    serde_json::to_vec(&value).map_err(|e| invalid(e.to_string()))
}
