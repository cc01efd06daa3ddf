//! Next-token cross-entropy, the one definition training minimises and
//! `dsi measure loss` reports: windows of a token stream fed through the
//! inference model's batched forward ([`LoadedModel::forward_batch`]),
//! each into its own fresh cache.

use crate::transformer::{BatchMember, LoadedModel};
use crate::{ModelError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData, activation::log_softmax};
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;

/// Mean next-token cross-entropy (nats per token) over windows of equal
/// length (`n + 1` tokens each: `n` predicted positions), in one batched
/// forward. On an autodiff backend the result carries the gradient.
pub fn batch_loss<B: Backend>(
    model: &LoadedModel<B>,
    windows: &[&[TokenId]],
) -> Result<Tensor<B, 1>> {
    let n = windows.first().map_or(0, |w| w.len().saturating_sub(1));
    if n == 0 || windows.iter().any(|w| w.len() != n + 1) {
        return Err(ModelError::InvalidConfig {
            field: "windows",
            reason: "a loss needs windows of one length, at least 2 tokens each".into(),
        });
    }
    let cancel = CancelFlag::new();
    let mut caches: Vec<_> = windows.iter().map(|_| model.new_cache(n)).collect();
    let members = windows
        .iter()
        .zip(caches.iter_mut())
        .map(|(window, cache)| BatchMember {
            tokens: &window[..n],
            cache,
            rows: n,
            cancel: &cancel,
        })
        .collect();
    let logits = model
        .forward_batch(members)
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let logits = Tensor::cat(logits, 0);
    let targets: Vec<i32> = windows
        .iter()
        .flat_map(|w| w[1..].iter().map(|&t| t as i32))
        .collect();
    let rows = targets.len();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [rows]), &model.device)
        .reshape([rows, 1]);
    let picked = log_softmax(logits, 1).gather(1, targets);
    Ok(picked.mean().neg())
}

/// `count` windows of `seq_len + 1` tokens, evenly spaced over `stream`
/// from its start (the held-out windows of training and of `dsi measure
/// loss`, so both report the same figure).
pub fn even_windows(stream: &[TokenId], seq_len: usize, count: usize) -> Result<Vec<&[TokenId]>> {
    let need = seq_len + 1;
    check_stream("scored", stream, seq_len)?;
    let count = count.max(1);
    let stride = ((stream.len() - need) / count).max(1);
    Ok((0..count)
        .map(|w| {
            let start = (w * stride).min(stream.len() - need);
            &stream[start..start + need]
        })
        .collect())
}

/// Refuses a `what` stream too short for one window of `seq_len + 1` tokens.
pub fn check_stream(what: &str, stream: &[TokenId], seq_len: usize) -> Result<()> {
    let need = seq_len + 1;
    if stream.len() <= need {
        return Err(ModelError::InvalidConfig {
            field: "corpus",
            reason: format!(
                "the {what} text has {} tokens, fewer than one window of {need}; add text or shorten --seq-len",
                stream.len()
            ),
        });
    }
    Ok(())
}

/// Mean loss over `windows`, fed `batch` at a time (no gradients kept).
pub fn mean_loss<B: Backend>(
    model: &LoadedModel<B>,
    windows: &[&[TokenId]],
    batch: usize,
) -> Result<f64> {
    let mut sum = 0.0;
    for chunk in windows.chunks(batch.max(1)) {
        sum += scalar(batch_loss(model, chunk)?)? * chunk.len() as f64;
    }
    Ok(sum / windows.len().max(1) as f64)
}

/// A one-element tensor's value.
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64> {
    let values = t
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    Ok(values.first().copied().unwrap_or(f64::NAN))
}
