//! The DSI, SI and non-SI state machines as one piece of synchronous logic.
//!
//! A [`Machine`] owns one request's verified tokens and its unverified draft
//! chain. It never runs a model and never reads a clock: the driver feeds it
//! what workers report (`on_drafted`, `on_verified`, `on_cancelled`,
//! `on_failed`, `on_timed_out`) and carries out the [`Command`]s it
//! returns. The same logic can therefore be driven by threads and tokio on
//! a server, by a test with scripted events, or by a single-threaded
//! browser loop.
//!
//! # The protocol
//!
//! **Positions.** Every token has an absolute position. The verified prefix
//! `tokens[..V]` is final. The chain holds drafts for positions `V..F` (the
//! frontier). A verification job covers the positions `start..end` of the
//! chain it was given: it returns how many of those drafts the target
//! accepts, and the target's own token at the first position it did not
//! accept (the correction, or the bonus when all were accepted).
//!
//! **Epochs.** An epoch is a run of drafting from one verified prefix. It ends
//! when the target disagrees with a draft: a rejection, or a bonus token that
//! differs from the next draft. Then the verified prefix grows by the
//! accepted drafts plus the target's token, the chain is cleared, and a new
//! epoch begins. Accepted drafts join the verified prefix as soon as any job
//! confirms them, without ending the epoch.
//!
//! **DSI.** The drafter never waits: it drafts `k` tokens at a time from the
//! frontier, and after each batch a job verifying the whole chain goes to the
//! pool. Every epoch also starts a job on the verified prefix with no drafts,
//! and whenever no live job would reveal the token at `V` one is started, so
//! the target is never idle on the critical path (DSI is never slower than
//! non-SI). With every server busy, jobs wait in a LIFO queue: the newest,
//! longest chain runs first; a queued job that no longer reveals a new
//! position is dropped.
//!
//! **SI** is DSI restricted to one job at a time: the drafter waits for each
//! verification, and no draft-less job runs beside it. **Non-SI** is a chain
//! of draft-less jobs, one at a time.
//!
//! **Preemption.** When an epoch ends, every job of the old epoch is
//! cancelled: queued jobs are dropped, running ones get a `Cancel` command
//! and stop at their next safe point. Their workers count as free at once:
//! a worker runs its tasks in order, so the cancelled job ends before the
//! next one starts. A report from a dead epoch never changes the output: the
//! machine matches each report to a live job of the current epoch first.
//!
//! **Consistency.** Each position is decided by the first report that
//! reveals it; reports agree on overlapping positions because randomness is
//! keyed by `(seed, position)` (see [`crate::verify`]), so later reports
//! either repeat what is known or are ignored.
//!
//! **Faults.** A target worker that fails or misses its deadline is retired
//! for the rest of the request and its job is queued again for the others;
//! when none is left the request fails. A deadline holds for preempted jobs
//! too: a worker that does not acknowledge a cancel in time is hung, and the
//! jobs queued behind its stuck one are cancelled and queued elsewhere. A
//! failing drafter makes the request finish as non-SI. Every fault is
//! recorded in [`Counters::errors`].
//!
//! **Retuning.** [`Machine::retune`] asks for another mode, lookahead or
//! number of servers. It applies at the next clean point: a new epoch (every
//! job of the old one is preempted anyway), or a moment when no job of the
//! epoch is running or queued and the chain is empty (between non-SI steps,
//! between SI iterations). The output cannot change: every position is
//! still decided by the target, keyed by position.
//!
//! **Shutdown.** The request ends at an end-of-sequence token, at the token
//! budget, on [`Machine::cancel`], or when no target worker is left. Every
//! live job is then cancelled, so the workers are free for the next request.

mod counters;
mod event;
mod machine;
mod plan;
mod work;

pub use counters::{Counters, judged_rate};
pub use event::{Event, EventKind, TimelineRecord, WorkerRef};
pub use machine::{Command, Drafted, Machine, StopReason};
pub use plan::{Mode, ModeSetting, Plan, Policy};
pub use work::{Dispatch, Work};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one job of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {}", self.0)
    }
}
