//! Batches: the tasks a worker runs in one call of its model, how they are
//! chosen and how they run.
//!
//! A worker takes the ready tasks of several requests at once: at most one
//! per request (a request's tasks stay in order, which the scheduler relies
//! on), requests in turn (round-robin, so a long request cannot starve the
//! others), until the tokens they feed would pass the budget
//! (`--max-batch-tokens`; a prefill chunk counts its chunk). Skipped on the
//! way: tasks already cancelled, and cache releases of requests that ended.

use crate::fair::FairQueue;
use crate::memory::Reservation;
use crate::roles::{Drafter, Job, JobStep, Scored, Scorer};
use crate::task::{Message, ReportKind, Task, Work};
use dsi_core::model::ForwardError;
use dsi_core::worker::{Verified, complete, undecided};

/// Tokens one batched forward feeds at most, unless a single task needs
/// more (`--max-batch-tokens`): a verification's k + 1 rows for each of
/// dozens of requests, or two prefill chunks.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 256;

/// What a worker is.
pub enum Role {
    /// The drafter.
    Drafter(Box<dyn Drafter>),
    /// A target server.
    Target(Box<dyn Scorer>),
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Drafter(_) => "Role::Drafter",
            Role::Target(_) => "Role::Target",
        })
    }
}

/// A task's job as its role sees it.
fn job(task: &Task) -> Job<'_> {
    Job {
        request: task.request,
        context: &task.context,
        count: task.work.count(),
        decoding: &task.decoding,
        cancel: &task.cancel,
    }
}

/// What a batch did for one task.
pub(crate) type TaskResult = Result<JobStep<ReportKind>, ForwardError>;

impl Role {
    /// Its KV caches, whichever role it plays.
    pub(crate) fn cache(&self) -> &dyn crate::roles::CacheState {
        match self {
            Role::Drafter(d) => d.as_ref(),
            Role::Target(t) => t.as_ref(),
        }
    }

    /// [`Role::cache`], to change.
    pub(crate) fn cache_mut(&mut self) -> &mut dyn crate::roles::CacheState {
        match self {
            Role::Drafter(d) => d.as_mut(),
            Role::Target(t) => t.as_mut(),
        }
    }

    /// Tokens `task`'s next forward feeds on this worker.
    pub(crate) fn next_feed(&self, task: &Task) -> usize {
        self.cache().next_feed(&job(task), task.work.rows())
    }

    /// Runs `tasks` (one per request) in one call of the model: one result
    /// per task, in order.
    pub(crate) fn run(&mut self, tasks: &[Task]) -> Vec<TaskResult> {
        let refused: Vec<_> = tasks
            .iter()
            .map(|task| match (&*self, &task.work) {
                (Role::Drafter(_), Work::Draft { .. }) | (Role::Target(_), Work::Verify { .. }) => {
                    None
                }
                (_, Work::Draft { .. }) => Some(Err(ForwardError::Failed(
                    "a draft job was sent to a target worker".into(),
                ))),
                (_, Work::Verify { .. }) => Some(Err(ForwardError::Failed(
                    "a verification job was sent to the drafter".into(),
                ))),
            })
            .collect();
        let mine = undecided(&refused);
        let jobs: Vec<Job<'_>> = mine.iter().map(|&i| job(&tasks[i])).collect();
        let ran = match self {
            Role::Drafter(drafter) => drafter
                .draft(&jobs)
                .into_iter()
                .map(|r| r.map(|step| map_step(step, ReportKind::Drafted)))
                .collect(),
            Role::Target(scorer) => scorer
                .score(&jobs)
                .into_iter()
                .zip(mine)
                .map(|(r, i)| match r? {
                    JobStep::Prefilled => Ok(JobStep::Prefilled),
                    JobStep::Done(scored) => verdict(&tasks[i], &scored).map(JobStep::Done),
                })
                .collect(),
        };
        complete(refused, ran)
    }
}

fn map_step<T>(step: JobStep<T>, f: impl FnOnce(T) -> ReportKind) -> JobStep<ReportKind> {
    match step {
        JobStep::Prefilled => JobStep::Prefilled,
        JobStep::Done(value) => JobStep::Done(f(value)),
    }
}

/// The verifier's verdict on a scored verification task, with the log
/// probabilities of the tokens it emits when the request asks.
fn verdict(task: &Task, scored: &Scored) -> Result<ReportKind, ForwardError> {
    let Work::Verify {
        drafts,
        draft_probs,
    } = &task.work
    else {
        return Err(ForwardError::Failed("not a verification".into()));
    };
    let Verified { verdict, logprobs } = dsi_core::worker::verify(
        &task.context,
        *drafts,
        draft_probs.as_ref(),
        &task.decoding,
        scored,
    )?;
    Ok(ReportKind::Verified { verdict, logprobs })
}

/// What [`take_batch`] met that is not for the batch.
#[derive(Debug)]
pub(crate) enum Aside {
    /// A task whose flag was raised before it ran.
    Cancelled(Task),
    /// A request ended: its caches may go, then its share of the memory
    /// reservation.
    Release(u64, Option<Reservation>),
}

/// Takes the next batch from `queue`: at most one task per request,
/// requests in turn, while the tokens (`feed` of each task) stay within
/// `budget` (the first task always goes). Returns it with the cancelled
/// tasks and releases met on the way, in the order met.
pub(crate) fn take_batch(
    queue: &mut FairQueue<Message>,
    budget: usize,
    feed: impl Fn(&Task) -> usize,
) -> (Vec<Task>, Vec<Aside>) {
    let mut batch: Vec<Task> = Vec::new();
    let mut aside = Vec::new();
    let mut tokens = 0;
    while let Some(message) = queue.pop() {
        let request = message.request();
        if batch.iter().any(|t| t.request == request) {
            queue.put_back(request, message);
            break;
        }
        let task = match message {
            Message::Run(task) => task,
            Message::Release(request, reservation) => {
                aside.push(Aside::Release(request, reservation));
                continue;
            }
        };
        if task.cancel.is_cancelled() {
            aside.push(Aside::Cancelled(task));
            continue;
        }
        let cost = feed(&task);
        if !batch.is_empty() && tokens + cost > budget {
            queue.put_back(request, Message::Run(task));
            break;
        }
        tokens += cost;
        batch.push(task);
    }
    (batch, aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsi_core::cancel::CancelFlag;
    use dsi_core::sampling::Decoding;
    use dsi_core::schedule::JobId;
    use tokio::sync::mpsc::unbounded_channel;

    /// A verification task of `request` with `drafts` drafts.
    fn task(request: u64, job: u64, drafts: usize) -> Message {
        Message::Run(Task {
            request,
            job: JobId(job),
            context: vec![0; drafts + 1],
            work: Work::Verify {
                drafts,
                draft_probs: None,
            },
            decoding: Decoding::greedy(),
            cancel: CancelFlag::new(),
            reply: unbounded_channel().0,
        })
    }

    fn queue(messages: Vec<Message>) -> FairQueue<Message> {
        let mut queue = FairQueue::default();
        for message in messages {
            queue.push(message.request(), message);
        }
        queue
    }

    /// (request, job) of each task.
    fn ids(batch: &[Task]) -> Vec<(u64, u64)> {
        batch.iter().map(|t| (t.request, t.job.0)).collect()
    }

    /// Each task feeds its drafts plus one.
    fn rows(task: &Task) -> usize {
        task.context.len()
    }

    #[test]
    fn one_task_per_request_in_turn_and_each_request_in_order() {
        let mut q = queue(vec![
            task(1, 0, 0),
            task(1, 1, 0),
            task(2, 0, 0),
            task(3, 0, 0),
        ]);
        let (batch, aside) = take_batch(&mut q, 100, rows);
        assert_eq!(ids(&batch), [(1, 0), (2, 0), (3, 0)]);
        assert!(aside.is_empty());
        let (batch, _) = take_batch(&mut q, 100, rows);
        assert_eq!(ids(&batch), [(1, 1)]);
        assert!(q.is_empty());
    }

    #[test]
    fn the_token_budget_ends_a_batch_and_the_next_starts_where_it_stopped() {
        // 4 rows each; a budget of 10 takes two.
        let mut q = queue((1..=5).map(|r| task(r, 0, 3)).collect());
        let (batch, _) = take_batch(&mut q, 10, rows);
        assert_eq!(ids(&batch), [(1, 0), (2, 0)]);
        let (batch, _) = take_batch(&mut q, 10, rows);
        assert_eq!(ids(&batch), [(3, 0), (4, 0)], "request 3 was not skipped");
        // A task over the budget alone still runs, alone.
        let mut q = queue(vec![task(7, 0, 20), task(8, 0, 0)]);
        let (batch, _) = take_batch(&mut q, 10, rows);
        assert_eq!(ids(&batch), [(7, 0)]);
        let (batch, _) = take_batch(&mut q, 10, rows);
        assert_eq!(ids(&batch), [(8, 0)]);
    }

    #[test]
    fn cancelled_heads_and_releases_are_set_aside() {
        let cancelled = task(1, 0, 0);
        if let Message::Run(t) = &cancelled {
            t.cancel.cancel();
        }
        let mut q = queue(vec![
            cancelled,
            task(1, 1, 0),
            Message::Release(2, None),
            task(3, 0, 0),
        ]);
        let (batch, aside) = take_batch(&mut q, 100, rows);
        assert_eq!(
            ids(&batch),
            [(3, 0), (1, 1)],
            "request 1's next task takes its place"
        );
        assert!(
            matches!(&aside[..], [Aside::Cancelled(t), Aside::Release(2, None)] if t.job == JobId(0))
        );
        assert!(q.is_empty());
    }
}
