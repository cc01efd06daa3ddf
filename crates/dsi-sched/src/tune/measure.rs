//! Measuring a pool's [`CostProfile`] through its own workers: what a job
//! costs as the driver sees it, by rows, and how much jobs running at once
//! slow each other down.

use super::call::{Called, call, join_all, median};
use crate::error::{Result, SchedError};
use crate::task::Work;
use crate::worker::WorkerHandle;
use crate::workers::Workers;
use dsi_core::TokenId;
use dsi_core::tune::CostProfile;
use std::cell::Cell;

/// How a profile is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSpec {
    /// Rows of the widest verification timed (the largest lookahead plus 1).
    pub rows: usize,
    /// Timed repetitions of each measurement (the median counts).
    pub repeats: usize,
    /// Tokens every measurement runs after (valid ids of the pool's
    /// vocabulary; a few dozen).
    pub context: Vec<TokenId>,
}

impl ProfileSpec {
    /// Lookaheads up to 10 (the paper's grid), 5 repetitions, over `context`.
    pub fn new(context: Vec<TokenId>) -> Self {
        Self {
            rows: dsi_core::tune::Space::DEFAULT_MAX_K + 1,
            repeats: 5,
            context,
        }
    }
}

/// Drafts per drafter job when measuring drafting beside target jobs.
const DRAFT_COUNT: usize = 4;

/// Job ids of the measurement; only their distinctness matters.
struct Jobs(Cell<u64>);

impl Jobs {
    fn next(&self) -> u64 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }
}

/// Measures `workers` under `request` (an id no real request uses; its
/// caches are released at the end).
pub(crate) async fn measure(
    workers: &Workers,
    request: u64,
    spec: &ProfileSpec,
) -> Result<CostProfile> {
    if spec.context.len() < 2 || spec.rows == 0 || spec.repeats == 0 {
        return Err(SchedError::Unfit(
            "a profile needs at least 2 context tokens, 1 row and 1 repetition".into(),
        ));
    }
    let profile = Measurement {
        workers,
        request,
        spec,
        jobs: Jobs(Cell::new(0)),
    }
    .run()
    .await;
    for worker in workers.drafter.iter().chain(&workers.targets) {
        worker.release(request, None);
    }
    profile
}

struct Measurement<'a> {
    workers: &'a Workers,
    request: u64,
    spec: &'a ProfileSpec,
    jobs: Jobs,
}

impl Measurement<'_> {
    async fn run(&self) -> Result<CostProfile> {
        let ctx = &self.spec.context;
        let targets = &self.workers.targets;
        // Fill every cache first; the first target's fill is the prefill.
        let target_prefill_ms = self.verify(0, ctx.clone(), 0).await?;
        for t in 1..targets.len() {
            self.verify(t, ctx.clone(), 0).await?;
        }
        let mut target_ms_by_rows = Vec::with_capacity(self.spec.rows);
        for rows in 1..=self.spec.rows {
            let mut samples = Vec::with_capacity(self.spec.repeats);
            for rep in 0..self.spec.repeats {
                samples.push(
                    self.verify(0, self.with_drafts(rows - 1, rep), rows - 1)
                        .await?,
                );
            }
            target_ms_by_rows.push(median(samples));
        }
        let (drafter_job_ms, drafter_step_ms) = match &self.workers.drafter {
            Some(_) => self.drafter_costs().await?,
            // No drafter: the figures are never used; keep them valid.
            None => (0.0, target_ms_by_rows[0]),
        };
        let one_row = target_ms_by_rows[0];
        let mut target_slowdown = vec![1.0];
        let mut target_slowdown_with_drafter = Vec::new();
        let mut drafter_slowdown = vec![1.0];
        for j in 1..=targets.len() {
            if j > 1 {
                let (ms, _) = self.concurrent(j, false).await?;
                target_slowdown.push(ms / one_row);
            }
            if self.workers.drafter.is_some() {
                let (ms, step) = self.concurrent(j, true).await?;
                target_slowdown_with_drafter.push(ms / one_row);
                drafter_slowdown.push(step.map_or(1.0, |s| (s / drafter_step_ms).max(1.0)));
            } else {
                target_slowdown_with_drafter.push(target_slowdown[j - 1]);
                drafter_slowdown.push(1.0);
            }
        }
        Ok(CostProfile {
            target_ms_by_rows,
            target_prefill_ms,
            prefill_tokens: ctx.len(),
            drafter_job_ms,
            drafter_step_ms,
            target_slowdown,
            target_slowdown_with_drafter,
            drafter_slowdown,
        })
    }

    /// The context plus `drafts` tokens that differ from the last
    /// repetition's, so every verification feeds its rows afresh.
    fn with_drafts(&self, drafts: usize, rep: usize) -> Vec<TokenId> {
        let ctx = &self.spec.context;
        let mut tokens = ctx.clone();
        tokens.extend((0..drafts).map(|i| ctx[(rep * 3 + i + 1) % ctx.len()]));
        tokens
    }

    async fn verify(&self, target: usize, context: Vec<TokenId>, drafts: usize) -> Result<f64> {
        let work = Work::Verify {
            drafts,
            draft_probs: None,
        };
        self.time(&self.workers.targets[target], context, work)
            .await
    }

    async fn draft(&self, count: usize, rep: usize) -> Result<f64> {
        let worker = self
            .workers
            .drafter
            .as_ref()
            .expect("checked by the caller");
        let mut context = self.spec.context.clone();
        context.push(context[rep % context.len()]);
        self.time(worker, context, Work::Draft { count }).await
    }

    /// Milliseconds of one job of the measurement on `worker`.
    async fn time(&self, worker: &WorkerHandle, context: Vec<TokenId>, work: Work) -> Result<f64> {
        let timeout = self.workers.job_timeout;
        let job = self.jobs.next();
        let Called { ms, .. } = call(worker, timeout, self.request, job, context, work).await?;
        Ok(ms)
    }

    /// A drafter job's fixed cost and its cost per step, from jobs of one
    /// step and of the widest lookahead.
    async fn drafter_costs(&self) -> Result<(f64, f64)> {
        let wide = self.spec.rows.max(2);
        let (mut one, mut many) = (Vec::new(), Vec::new());
        for rep in 0..self.spec.repeats {
            one.push(self.draft(1, rep).await?);
            many.push(self.draft(wide, rep + 1).await?);
        }
        let (one, many) = (median(one), median(many));
        let step = ((many - one) / (wide - 1) as f64).max(one / wide as f64);
        Ok(((one - step).max(0.0), step))
    }

    /// Median one-row job time of `j` targets running at once, each its own
    /// loop of jobs; with `drafter`, the drafter drafts beside them until
    /// they are done, and its median time per step is returned too (none
    /// when no draft job ran wholly beside them).
    async fn concurrent(&self, j: usize, drafter: bool) -> Result<(f64, Option<f64>)> {
        let done = &Cell::new(0usize);
        let loops = (0..j).map(|t| async move {
            let mut samples = Vec::with_capacity(self.spec.repeats);
            for rep in 0..self.spec.repeats {
                samples.push(self.verify(t, self.with_drafts(0, rep), 0).await?);
            }
            done.set(done.get() + 1);
            Ok::<_, SchedError>(samples)
        });
        let targets = join_all(loops);
        let drafting = async {
            let mut steps = Vec::new();
            let mut rep = 0;
            while drafter && done.get() < j {
                let ms = self.draft(DRAFT_COUNT, rep).await?;
                // Only drafts that ran wholly beside the targets count.
                if done.get() < j {
                    steps.push(ms / DRAFT_COUNT as f64);
                }
                rep += 1;
            }
            Ok::<_, SchedError>(steps)
        };
        let (targets, steps) = tokio::join!(targets, drafting);
        let mut samples = Vec::new();
        for t in targets {
            samples.extend(t?);
        }
        let steps = steps?;
        let step = (!steps.is_empty()).then(|| median(steps));
        Ok((median(samples), step))
    }
}
