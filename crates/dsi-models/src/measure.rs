//! The paper's two measurements of a drafter/target pair (DESIGN.md §2):
//! the acceptance rate from teacher forcing, and TTFT/TPOT latency.
//!
//! Acceptance: the target generates greedily; the drafter, fed the prompt
//! and the target's tokens in one forward, predicts each next token; runs of
//! matches form windows (see `dsi_core::acceptance`). No clock is read
//! here: the caller times forwards for latency.

use crate::transformer::LoadedModel;
use crate::{ModelError, Result};
use burn::tensor::backend::Backend;
use dsi_core::TokenId;
use dsi_core::verify::argmax;

/// The target's greedy continuation of `prompt`: at most `max_new` tokens,
/// stopping before an end-of-sequence token.
pub fn greedy_continuation<B: Backend>(
    model: &LoadedModel<B>,
    prompt: &[TokenId],
    max_new: usize,
    eos: &[TokenId],
) -> Result<Vec<TokenId>> {
    if prompt.is_empty() {
        return Err(ModelError::EmptyInput);
    }
    let mut cache = model.new_cache(prompt.len() + max_new);
    let mut logits = model.forward(prompt, &mut cache)?;
    let mut out = Vec::with_capacity(max_new);
    while out.len() < max_new {
        let token = argmax(logits.row(logits.rows() - 1));
        if eos.contains(&token) {
            break;
        }
        out.push(token);
        if out.len() == max_new {
            break;
        }
        logits = model.forward(&[token], &mut cache)?;
    }
    Ok(out)
}

/// For each token of `continuation`, whether the drafter's greedy prediction
/// after the prompt and the preceding target tokens is that token.
pub fn teacher_forced_matches<B: Backend>(
    drafter: &LoadedModel<B>,
    prompt: &[TokenId],
    continuation: &[TokenId],
) -> Result<Vec<bool>> {
    if prompt.is_empty() {
        return Err(ModelError::EmptyInput);
    }
    if continuation.is_empty() {
        return Ok(Vec::new());
    }
    let mut sequence = prompt.to_vec();
    sequence.extend_from_slice(&continuation[..continuation.len() - 1]);
    let mut cache = drafter.new_cache(sequence.len());
    let logits = drafter.forward(&sequence, &mut cache)?;
    let first = prompt.len() - 1;
    Ok(continuation
        .iter()
        .enumerate()
        .map(|(i, &token)| argmax(logits.row(first + i)) == token)
        .collect())
}
