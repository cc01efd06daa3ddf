//! Fake workers for scheduler tests: async tasks on (paused) tokio time that
//! answer from a toy world, with scripted latencies and faults.

#![allow(dead_code)]

use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::rng::{keyed_open01, keyed_u64};
use dsi_core::schedule::Drafted;
use dsi_core::verify::verify_greedy;
use dsi_sched::WorkerHandle;
use dsi_sched::task::{Message, Report, ReportKind, Work};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::unbounded_channel;

/// The target's greedy token at each position, and a drafter that is right
/// with probability `hit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) hit: f64,
}

impl World {
    pub(crate) fn truth(&self, position: usize) -> TokenId {
        (keyed_u64(self.seed, position as u64, 1) % 50) as TokenId + 2
    }

    pub(crate) fn draft(&self, position: usize) -> TokenId {
        if keyed_open01(self.seed, position as u64, 2) < self.hit {
            self.truth(position)
        } else {
            1
        }
    }

    pub(crate) fn expected(&self, prompt_len: usize, n: usize) -> Vec<TokenId> {
        (prompt_len..prompt_len + n)
            .map(|p| self.truth(p))
            .collect()
    }
}

/// How a fake worker behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Answers after its latency.
    Normal,
    /// Fails every job.
    Fails,
    /// Never answers (a hung device).
    Hangs,
    /// Answers its first `n` jobs, then stops answering anything, cancels
    /// included (a process stopped mid-request).
    HangsAfter(usize),
}

/// What a fake worker saw, shared with the test.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) jobs: AtomicUsize,
    pub(crate) cancelled: AtomicUsize,
}

/// Spawns a fake worker as a tokio task; `per_token` is the drafter's time
/// per draft, or the target's time per verification.
pub(crate) fn fake_worker(
    name: &str,
    world: World,
    latency: Duration,
    behaviour: Behaviour,
) -> (WorkerHandle, Arc<Seen>) {
    let (tx, mut rx) = unbounded_channel::<Message>();
    let seen = Arc::new(Seen::default());
    let seen_inner = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let Message::Run(task) = message else {
                continue;
            };
            let report = |kind| {
                let _ = task.reply.send(Report {
                    job: task.job,
                    at: Instant::now(),
                    kind,
                });
            };
            if task.cancel.is_cancelled() {
                report(ReportKind::Cancelled { ran: false });
                continue;
            }
            let earlier = seen_inner.jobs.fetch_add(1, Ordering::SeqCst);
            report(ReportKind::Started);
            let steps = match task.work {
                Work::Draft { count } => count as u32,
                Work::Verify { .. } => 1,
            };
            let hangs = match behaviour {
                Behaviour::Hangs => true,
                Behaviour::HangsAfter(n) => earlier >= n,
                Behaviour::Normal | Behaviour::Fails => false,
            };
            if hangs {
                std::future::pending::<()>().await;
            }
            if !sleep_unless_cancelled(latency * steps, &task.cancel).await {
                seen_inner.cancelled.fetch_add(1, Ordering::SeqCst);
                report(ReportKind::Cancelled { ran: true });
                continue;
            }
            if behaviour == Behaviour::Fails {
                report(ReportKind::Failed("injected device error".into()));
                continue;
            }
            let n = task.context.len();
            let kind = match &task.work {
                Work::Draft { count } => ReportKind::Drafted(
                    (0..*count)
                        .map(|i| Drafted {
                            token: world.draft(n + i),
                            probs: None,
                        })
                        .collect(),
                ),
                Work::Verify { drafts, .. } => {
                    let start = n - drafts;
                    let choices: Vec<TokenId> = (start..=n).map(|p| world.truth(p)).collect();
                    ReportKind::Verified {
                        verdict: verify_greedy(&task.context[start..], &choices).expect("verdict"),
                        logprobs: None,
                    }
                }
            };
            report(kind);
        }
    });
    (WorkerHandle::from_channel(name, tx), seen)
}

/// Sleeps on tokio time in 1 ms steps; false when cancelled first.
async fn sleep_unless_cancelled(total: Duration, cancel: &CancelFlag) -> bool {
    let deadline = tokio::time::Instant::now() + total;
    loop {
        if cancel.is_cancelled() {
            return false;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return true;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(1))).await;
    }
}
