//! Weights whose every greedy choice is a near-tie, to test that numerics
//! which depend on how a forward is cut would change tokens.
//!
//! The LM head's rows come in pairs: row `2j + 1` is row `2j` scaled by
//! `1 + 2^-22`, so the two logits differ by about two parts in ten million
//! of the logit, the order of the rounding that a different reduction order
//! introduces. Whichever token wins a position, its twin is that close.

use super::{HostTensor, TensorSource};
use crate::Result;
#[cfg(not(target_arch = "wasm32"))]
use {
    super::{Checkpoint, StoreDtype, write_random},
    crate::ModelError,
    std::path::Path,
};

/// How much row `2j + 1` of the LM head exceeds row `2j`.
pub const NEAR_TIE_SCALE: f32 = 1.0 + 1.0 / (1 << 22) as f32;

/// A [`TensorSource`] that reads `inner` and pairs the LM head's rows (the
/// embedding's when the two are tied).
#[derive(Debug)]
pub struct NearTies<S> {
    /// Where every other tensor comes from unchanged.
    pub inner: S,
    /// The tensor that serves as the LM head.
    pub head: String,
}

impl<S: TensorSource> TensorSource for NearTies<S> {
    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let mut tensor = self.inner.read(name, expected)?;
        if name == self.head
            && let [rows, width] = tensor.shape[..]
        {
            for pair in 0..rows / 2 {
                let (a, b) =
                    tensor.values[2 * pair * width..(2 * pair + 2) * width].split_at_mut(width);
                for (a, b) in a.iter().zip(b) {
                    *b = *a * NEAR_TIE_SCALE;
                }
            }
        }
        Ok(tensor)
    }
}

/// Writes the checkpoint in `from` with its LM head paired ([`NearTies`])
/// into `to`, in f32, with its tokenizer, and opens it.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_near_ties(from: &Path, to: &Path) -> Result<Checkpoint> {
    let Checkpoint {
        config, weights, ..
    } = Checkpoint::open(from)?;
    let head = if config.tie_word_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let source = NearTies {
        inner: weights,
        head: head.into(),
    };
    write_random(to, &config, &source, StoreDtype::F32)?;
    let tokenizer = from.join("tokenizer.json");
    std::fs::copy(&tokenizer, to.join("tokenizer.json")).map_err(|source| ModelError::Io {
        path: tokenizer,
        source,
    })?;
    Checkpoint::open(to)
}
