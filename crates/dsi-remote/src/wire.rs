//! Conversions between the scheduler's plain data and the protocol's
//! messages. Everything that comes off the wire is checked here, so a bad
//! message becomes a [`WireError`] naming the field, never a panic.

use crate::pb;
use dsi_core::Verdict;
use dsi_core::cache_layout::{CacheFootprint, SegmentPolicy};
use dsi_core::sampling::{Decoding, LogitsProcessors, SamplingParams, TokenLogprobs};
use dsi_core::schedule::Drafted;
use dsi_core::verify::{ProbTable, VerifyRule};
use dsi_sched::task::{ReportKind, Work};
use std::sync::Arc;

/// A message that does not say what the protocol needs.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {why}")]
pub struct WireError {
    what: &'static str,
    why: String,
}

impl WireError {
    pub(crate) fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

type Result<T> = std::result::Result<T, WireError>;

fn size(what: &'static str, value: u64) -> Result<usize> {
    usize::try_from(value).map_err(|_| WireError::new(what, format!("{value} does not fit")))
}

/// A distribution: its non-zero entries when fewer than half are non-zero
/// (top-k and top-p leave few), else every entry.
pub(crate) fn distribution(row: &[f32]) -> pb::Distribution {
    let nonzero = row.iter().filter(|&&p| p != 0.0).count();
    if nonzero * 2 < row.len() {
        let (ids, probs) = row
            .iter()
            .enumerate()
            .filter(|(_, p)| **p != 0.0)
            .map(|(i, &p)| (i as u32, p))
            .unzip();
        pb::Distribution {
            dense: Vec::new(),
            ids,
            probs,
        }
    } else {
        pb::Distribution {
            dense: row.to_vec(),
            ids: Vec::new(),
            probs: Vec::new(),
        }
    }
}

/// The row of `vocab` entries a [`pb::Distribution`] stands for.
pub(crate) fn row(d: pb::Distribution, vocab: usize) -> Result<Vec<f32>> {
    if !d.dense.is_empty() {
        if d.dense.len() != vocab {
            return Err(WireError::new(
                "distribution",
                format!("{} entries for a vocabulary of {vocab}", d.dense.len()),
            ));
        }
        return Ok(d.dense);
    }
    if d.ids.len() != d.probs.len() {
        return Err(WireError::new(
            "distribution",
            format!("{} ids but {} probabilities", d.ids.len(), d.probs.len()),
        ));
    }
    let mut row = vec![0.0; vocab];
    for (&id, &p) in d.ids.iter().zip(&d.probs) {
        let slot = row.get_mut(id as usize).ok_or_else(|| {
            WireError::new(
                "distribution",
                format!("token {id} outside a vocabulary of {vocab}"),
            )
        })?;
        *slot = p;
    }
    Ok(row)
}

/// A job's work on the wire.
pub(crate) fn work(work: &Work) -> pb::run::Work {
    match work {
        Work::Draft { count } => pb::run::Work::Draft(pb::Draft {
            count: *count as u64,
        }),
        Work::Verify {
            drafts,
            draft_probs,
        } => pb::run::Work::Verify(pb::Verify {
            drafts: *drafts as u64,
            vocab: draft_probs.as_ref().map_or(0, |t| t.vocab() as u64),
            draft_probs: draft_probs.as_ref().map_or_else(Vec::new, |table| {
                (0..table.rows())
                    .map(|i| distribution(table.row(i)))
                    .collect()
            }),
        }),
    }
}

/// A job's work off the wire.
pub(crate) fn work_from(work: Option<pb::run::Work>) -> Result<Work> {
    match work {
        Some(pb::run::Work::Draft(d)) => Ok(Work::Draft {
            count: size("draft count", d.count)?,
        }),
        Some(pb::run::Work::Verify(v)) => {
            let draft_probs = if v.draft_probs.is_empty() {
                None
            } else {
                let vocab = size("vocabulary", v.vocab)?;
                let mut probs = Vec::with_capacity(vocab * v.draft_probs.len());
                for d in v.draft_probs {
                    probs.extend(row(d, vocab)?);
                }
                Some(
                    ProbTable::new(vocab, probs)
                        .map_err(|e| WireError::new("draft distributions", e.to_string()))?,
                )
            };
            Ok(Work::Verify {
                drafts: size("draft count", v.drafts)?,
                draft_probs,
            })
        }
        None => Err(WireError::new("job", "no work named")),
    }
}

/// A request's settings on the wire.
pub(crate) fn decoding(d: &Decoding) -> pb::Decoding {
    let (rule, rule_seed) = match d.rule {
        VerifyRule::Greedy => (pb::decoding::Rule::Greedy, 0),
        VerifyRule::Speculative { seed } => (pb::decoding::Rule::Speculative, seed),
        VerifyRule::Coupled { seed } => (pb::decoding::Rule::Coupled, seed),
    };
    pb::Decoding {
        temperature: d.params.temperature,
        top_k: d.params.top_k.map(|k| k as u64),
        top_p: d.params.top_p,
        seed: d.params.seed,
        rule: rule as i32,
        rule_seed,
        processors: d.processors.as_deref().map(|p| pb::Processors {
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            repetition_penalty: p.repetition_penalty,
            logit_bias: p
                .logit_bias
                .iter()
                .map(|&(token, bias)| pb::LogitBias { token, bias })
                .collect(),
            min_tokens: p.min_tokens as u64,
            eos: p.eos.clone(),
            prompt_len: p.prompt_len as u64,
        }),
        logprobs: d.logprobs.map(|n| n as u64),
    }
}

/// A request's settings off the wire.
pub(crate) fn decoding_from(d: pb::Decoding) -> Result<Decoding> {
    let rule = match pb::decoding::Rule::try_from(d.rule) {
        Ok(pb::decoding::Rule::Greedy) => VerifyRule::Greedy,
        Ok(pb::decoding::Rule::Speculative) => VerifyRule::Speculative { seed: d.rule_seed },
        Ok(pb::decoding::Rule::Coupled) => VerifyRule::Coupled { seed: d.rule_seed },
        _ => return Err(WireError::new("decoding", format!("rule {}", d.rule))),
    };
    let processors = match d.processors {
        Some(p) => Some(Arc::new(LogitsProcessors {
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            repetition_penalty: p.repetition_penalty,
            logit_bias: p.logit_bias.iter().map(|b| (b.token, b.bias)).collect(),
            min_tokens: size("min_tokens", p.min_tokens)?,
            eos: p.eos,
            prompt_len: size("prompt_len", p.prompt_len)?,
        })),
        None => None,
    };
    Ok(Decoding {
        params: SamplingParams {
            temperature: d.temperature,
            top_k: d.top_k.map(|k| size("top_k", k)).transpose()?,
            top_p: d.top_p,
            seed: d.seed,
        },
        rule,
        processors,
        logprobs: d.logprobs.map(|n| size("logprobs", n)).transpose()?,
    })
}

/// A worker's report on the wire.
pub(crate) fn report_kind(kind: ReportKind) -> pb::report::Kind {
    match kind {
        ReportKind::Started => pb::report::Kind::Started(pb::Started {}),
        ReportKind::Drafted(drafts) => pb::report::Kind::Drafted(pb::DraftedTokens {
            tokens: drafts
                .into_iter()
                .map(|d| pb::Drafted {
                    token: d.token,
                    probs: d.probs.as_deref().map(distribution),
                })
                .collect(),
        }),
        ReportKind::Verified { verdict, logprobs } => pb::report::Kind::Verified(pb::Verified {
            accepted: verdict.accepted as u64,
            next_token: verdict.next_token,
            drafted: verdict.drafted as u64,
            has_logprobs: logprobs.is_some(),
            logprobs: logprobs
                .unwrap_or_default()
                .into_iter()
                .map(|row| pb::TokenLogprobs {
                    token: row.token,
                    logprob: row.logprob,
                    top: row
                        .top
                        .into_iter()
                        .map(|(token, logprob)| pb::TopLogprob { token, logprob })
                        .collect(),
                })
                .collect(),
        }),
        ReportKind::Cancelled { ran } => pb::report::Kind::Cancelled(pb::Cancelled { ran }),
        ReportKind::Failed(message) => pb::report::Kind::Failed(message),
    }
}

/// A worker's report off the wire; `vocab` sizes the drafter's
/// distributions.
pub(crate) fn report_kind_from(kind: Option<pb::report::Kind>, vocab: usize) -> Result<ReportKind> {
    Ok(match kind {
        Some(pb::report::Kind::Started(_)) => ReportKind::Started,
        Some(pb::report::Kind::Drafted(d)) => ReportKind::Drafted(
            d.tokens
                .into_iter()
                .map(|d| {
                    Ok(Drafted {
                        token: d.token,
                        probs: d.probs.map(|p| row(p, vocab)).transpose()?,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        Some(pb::report::Kind::Verified(v)) => ReportKind::Verified {
            verdict: Verdict {
                accepted: size("accepted", v.accepted)?,
                next_token: v.next_token,
                drafted: size("drafted", v.drafted)?,
            },
            logprobs: v.has_logprobs.then(|| {
                v.logprobs
                    .into_iter()
                    .map(|row| TokenLogprobs {
                        token: row.token,
                        logprob: row.logprob,
                        top: row.top.into_iter().map(|t| (t.token, t.logprob)).collect(),
                    })
                    .collect()
            }),
        },
        Some(pb::report::Kind::Cancelled(c)) => ReportKind::Cancelled { ran: c.ran },
        Some(pb::report::Kind::Failed(message)) => ReportKind::Failed(message),
        None => return Err(WireError::new("report", "no kind")),
    })
}

/// Whether a report ends its job.
pub(crate) fn ends_job(kind: &ReportKind) -> bool {
    !matches!(kind, ReportKind::Started)
}

/// A cache footprint on the wire.
pub(crate) fn footprint(f: &CacheFootprint) -> pb::CacheFootprint {
    pb::CacheFootprint {
        bytes_per_position: f.bytes_per_position as u64,
        first_segment: f.policy.first as u64,
        max_segment: f.policy.max as u64,
        capacity: f.capacity as u64,
    }
}

/// A cache footprint off the wire.
pub(crate) fn footprint_from(f: &pb::CacheFootprint) -> Result<CacheFootprint> {
    Ok(CacheFootprint {
        bytes_per_position: size("bytes per position", f.bytes_per_position)?,
        policy: SegmentPolicy {
            first: size("first segment", f.first_segment)?.max(1),
            max: size("largest segment", f.max_segment)?.max(1),
        },
        capacity: size("capacity", f.capacity)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_and_dense_distributions_round_trip() {
        let sparse = [0.0, 0.75, 0.0, 0.0, 0.25, 0.0];
        let wire = distribution(&sparse);
        assert!(wire.dense.is_empty());
        assert_eq!(wire.ids, [1, 4]);
        assert_eq!(row(wire, 6).expect("valid"), sparse);
        let dense = [0.1, 0.2, 0.3, 0.4];
        let wire = distribution(&dense);
        assert_eq!(wire.dense.len(), 4);
        assert_eq!(row(wire, 4).expect("valid"), dense);
    }

    #[test]
    fn bad_distributions_are_refused_by_name() {
        let outside = pb::Distribution {
            dense: Vec::new(),
            ids: vec![9],
            probs: vec![1.0],
        };
        let err = row(outside, 4).expect_err("outside the vocabulary");
        assert!(err.to_string().contains("token 9 outside"), "{err}");
        let short = pb::Distribution {
            dense: vec![1.0],
            ids: Vec::new(),
            probs: Vec::new(),
        };
        assert!(row(short, 4).is_err());
    }

    #[test]
    fn every_setting_survives_the_wire() {
        let d = Decoding {
            params: SamplingParams {
                temperature: 0.7,
                top_k: Some(40),
                top_p: Some(0.9),
                seed: 1234,
            },
            rule: VerifyRule::Speculative { seed: 99 },
            processors: Some(Arc::new(LogitsProcessors {
                presence_penalty: 0.5,
                frequency_penalty: -0.25,
                repetition_penalty: 1.1,
                logit_bias: vec![(3, -100.0), (7, 2.5)],
                min_tokens: 4,
                eos: vec![0, 2],
                prompt_len: 17,
            })),
            logprobs: Some(5),
        };
        assert_eq!(decoding_from(decoding(&d)).expect("valid"), d);
        let greedy = Decoding::greedy();
        assert_eq!(decoding_from(decoding(&greedy)).expect("valid"), greedy);
    }

    #[test]
    fn reports_survive_the_wire() {
        let kinds = [
            ReportKind::Started,
            ReportKind::Drafted(vec![
                Drafted {
                    token: 5,
                    probs: Some(vec![0.0, 0.5, 0.5, 0.0, 0.0]),
                },
                Drafted {
                    token: 1,
                    probs: None,
                },
            ]),
            ReportKind::Verified {
                verdict: Verdict {
                    accepted: 2,
                    next_token: 9,
                    drafted: 3,
                },
                logprobs: Some(vec![TokenLogprobs {
                    token: 9,
                    logprob: -0.5,
                    top: vec![(9, -0.5), (1, -1.5)],
                }]),
            },
            ReportKind::Verified {
                verdict: Verdict {
                    accepted: 0,
                    next_token: 1,
                    drafted: 0,
                },
                logprobs: None,
            },
            ReportKind::Cancelled { ran: true },
            ReportKind::Failed("out of memory".into()),
        ];
        for kind in kinds {
            let expected = format!("{kind:?}");
            let back = report_kind_from(Some(report_kind(kind)), 5).expect("valid");
            assert_eq!(format!("{back:?}"), expected);
        }
    }

    #[test]
    fn verifications_carry_the_drafters_distributions() {
        let table = ProbTable::new(3, vec![0.5, 0.5, 0.0, 0.0, 0.0, 1.0]).expect("valid");
        let verify = Work::Verify {
            drafts: 2,
            draft_probs: Some(table.clone()),
        };
        match work_from(Some(work(&verify))).expect("valid") {
            Work::Verify {
                drafts: 2,
                draft_probs: Some(back),
            } => assert_eq!(back, table),
            other => panic!("not the same work: {other:?}"),
        }
        assert!(work_from(None).is_err());
    }
}
