//! Contexts as deltas: a worker keeps each request's KV cache, so the
//! coordinator sends only how much of the context it last sent for that
//! request still holds, and the new tail. Both ends keep the same mirror.

use crate::wire::WireError;
use dsi_core::TokenId;
use std::collections::HashMap;

/// The context last sent (or received) for each request on one stream.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    contexts: HashMap<u64, Vec<TokenId>>,
}

impl Mirror {
    /// Coordinator side: what to send for `context`, as (tokens of the last
    /// context kept, the tokens after them).
    pub(crate) fn encode(&mut self, request: u64, context: &[TokenId]) -> (usize, Vec<TokenId>) {
        let last = self.contexts.entry(request).or_default();
        let keep = last.iter().zip(context).take_while(|(a, b)| a == b).count();
        let tail = context[keep..].to_vec();
        last.truncate(keep);
        last.extend_from_slice(&tail);
        (keep, tail)
    }

    /// Worker side: the context a (keep, tail) pair stands for.
    pub(crate) fn decode(
        &mut self,
        request: u64,
        keep: u64,
        tail: &[TokenId],
    ) -> Result<Vec<TokenId>, WireError> {
        let last = self.contexts.entry(request).or_default();
        let keep = usize::try_from(keep)
            .ok()
            .filter(|&k| k <= last.len())
            .ok_or_else(|| {
                WireError::new(
                    "job context",
                    format!(
                        "keeps {keep} tokens of a context of {} for request {request}",
                        last.len()
                    ),
                )
            })?;
        last.truncate(keep);
        last.extend_from_slice(tail);
        Ok(last.clone())
    }

    /// Forgets `request` (it ended).
    pub(crate) fn forget(&mut self, request: u64) {
        self.contexts.remove(&request);
    }

    /// The requests it holds a context for.
    pub(crate) fn requests(&self) -> impl Iterator<Item = u64> + '_ {
        self.contexts.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_agree_on_every_context() {
        let (mut coordinator, mut worker) = (Mirror::default(), Mirror::default());
        let contexts: [&[TokenId]; 5] = [
            &[1, 2, 3],
            &[1, 2, 3, 4, 5],
            &[1, 2, 9],
            &[1, 2, 9, 9, 9, 9],
            &[7],
        ];
        for context in contexts {
            let (keep, tail) = coordinator.encode(1, context);
            assert_eq!(
                worker.decode(1, keep as u64, &tail).expect("valid"),
                context
            );
        }
        let (keep, tail) = coordinator.encode(1, &[7, 8]);
        assert_eq!((keep, tail.as_slice()), (1, &[8][..]), "only the tail");
    }

    #[test]
    fn a_delta_past_the_mirror_is_refused() {
        let mut worker = Mirror::default();
        let err = worker.decode(3, 2, &[1]).expect_err("nothing to keep");
        assert!(err.to_string().contains("keeps 2 tokens of a context of 0"));
    }
}
