//! Starting and dispatching jobs: what each mode asks for after every
//! event, the LIFO queue of verification jobs, and the choice of worker.

use super::{Command, LiveJob, Machine, QueuedJob, WorkerState};
use crate::TokenId;
use crate::schedule::{EventKind, JobId, Mode, WorkerRef};
use crate::verify::ProbTable;

impl Machine {
    /// Queues a verification job revealing the token at `end`.
    pub(super) fn submit_verify(&mut self, end: usize) {
        let job = self.new_job();
        self.queue.push(QueuedJob {
            job,
            epoch: self.epoch,
            end,
        });
        let v = self.verified_len();
        self.event(EventKind::Queued, Some(job), None, v, end, None);
    }

    /// After every event: start what the mode calls for, then hand queued
    /// jobs to idle workers.
    pub(super) fn keep_busy(&mut self) {
        if self.stop.is_some() {
            return;
        }
        self.prune_queue();
        if self.pending.is_some() && self.at_idle_point() {
            self.apply_retune();
        }
        let target_pending = self.live.values().any(|j| {
            !j.preempted && j.epoch == self.epoch && matches!(j.worker, WorkerRef::Target(_))
        }) || !self.queue.is_empty();
        match self.mode {
            Mode::NonSi => {
                if !target_pending {
                    self.submit_verify(self.verified_len());
                }
                self.maybe_probe();
            }
            Mode::Si => {
                if !target_pending && self.drafter == WorkerState::Idle {
                    let count = self.k.min(self.draft_room());
                    if count > 0 && self.chain.is_empty() {
                        self.start_draft(count);
                    } else {
                        self.submit_verify(self.frontier());
                    }
                }
            }
            Mode::Dsi => {
                // Something must always be revealing the token at V.
                let v = self.verified_len();
                let revealing = self.live.values().any(|j| {
                    !j.preempted
                        && j.epoch == self.epoch
                        && matches!(j.worker, WorkerRef::Target(_))
                        && j.end >= v
                }) || self.queue.iter().any(|q| q.end >= v);
                if !revealing {
                    self.submit_verify(self.frontier());
                }
                if self.drafter == WorkerState::Idle {
                    let count = self.k.min(self.draft_room());
                    if count > 0 {
                        self.start_draft(count);
                    }
                }
            }
        }
        self.dispatch();
    }

    /// Starts a non-SI probe when one is due (see `Machine::probe_every`).
    fn maybe_probe(&mut self) {
        let v = self.verified_len();
        if self.probe_every == 0
            || self.drafter != WorkerState::Idle
            || !self.chain.is_empty()
            || v < self.probed_at + self.probe_every
        {
            return;
        }
        let count = Self::PROBE_DRAFTS.min(self.draft_room());
        if count > 0 {
            self.probed_at = v;
            self.start_draft(count);
        }
    }

    /// True when no job of the epoch runs or waits and no draft is pending
    /// verification: a retune cannot strand anything here.
    fn at_idle_point(&self) -> bool {
        self.chain.is_empty()
            && self.queue.is_empty()
            && self
                .live
                .values()
                .all(|j| j.preempted || j.epoch != self.epoch)
    }

    /// Drops queued jobs that can no longer reveal a new position; they
    /// never will, as the verified prefix only grows within an epoch.
    pub(super) fn prune_queue(&mut self) {
        let v = self.verified_len();
        let (keep, stale): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.end >= v);
        self.queue = keep;
        for queued in stale {
            self.drop_queued(queued);
        }
    }

    /// Counts and records a queued job that will never run.
    pub(super) fn drop_queued(&mut self, queued: QueuedJob) {
        self.counters.jobs_dropped += 1;
        let v = self.verified_len();
        self.event(
            EventKind::Dropped,
            Some(queued.job),
            None,
            v,
            queued.end,
            None,
        );
    }

    /// Hands `command` to the driver and tracks `job` as live on `live.worker`.
    fn launch(&mut self, job: JobId, live: LiveJob, command: Command) {
        let (worker, start, end) = (live.worker, live.start, live.end);
        self.live.insert(job, live);
        self.commands.push(command);
        self.event(
            EventKind::Dispatched,
            Some(job),
            Some(worker),
            start,
            end,
            None,
        );
    }

    pub(super) fn start_draft(&mut self, count: usize) {
        let job = self.new_job();
        let start = self.frontier();
        let mut context = Vec::with_capacity(start);
        context.extend_from_slice(&self.tokens);
        context.extend_from_slice(&self.chain);
        self.drafter = WorkerState::Busy(job);
        let live = LiveJob {
            worker: WorkerRef::Drafter,
            epoch: self.epoch,
            start,
            end: start + count,
            preempted: false,
        };
        let command = Command::Draft {
            job,
            context,
            count,
        };
        self.launch(job, live, command);
    }

    /// Hands the newest queued jobs to idle target workers.
    pub(super) fn dispatch(&mut self) {
        while let Some(worker) = self.idle_target() {
            let Some(queued) = self.queue.pop() else {
                return;
            };
            let v = self.verified_len();
            // `keep_busy` pruned the queue, and a new epoch empties it.
            debug_assert!(queued.epoch == self.epoch && v <= queued.end);
            debug_assert!(queued.end <= self.frontier());
            // Rebase on the verified prefix: drafts that were confirmed since
            // the job was queued are verified tokens now.
            let drafts = queued.end - v;
            let mut context = Vec::with_capacity(queued.end);
            context.extend_from_slice(&self.tokens);
            context.extend_from_slice(&self.chain[..drafts]);
            let worker = self.best_worker(worker, &context);
            let draft_probs = self.draft_probs(drafts);
            self.targets[worker] = WorkerState::Busy(queued.job);
            self.target_contexts[worker].clone_from(&context);
            self.counters.jobs_started += 1;
            let live = LiveJob {
                worker: WorkerRef::Target(worker),
                epoch: self.epoch,
                start: v,
                end: queued.end,
                preempted: false,
            };
            let command = Command::Verify {
                job: queued.job,
                worker,
                context,
                drafts,
                draft_probs,
            };
            self.launch(queued.job, live, command);
        }
    }

    /// The first idle worker among those in use.
    pub(super) fn idle_target(&self) -> Option<usize> {
        self.in_use()
            .find(|&w| self.targets[w] == WorkerState::Idle)
    }

    /// The workers in use: the first `servers` not retired (a retired
    /// worker's place goes to the next one).
    pub(super) fn in_use(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.targets.len())
            .filter(|&w| self.targets[w] != WorkerState::Retired)
            .take(self.servers)
    }

    /// The idle worker whose cache shares the longest prefix with `context`
    /// (the first idle one on ties), so it feeds the fewest tokens.
    pub(super) fn best_worker(&self, first_idle: usize, context: &[TokenId]) -> usize {
        let shared = |w: usize| {
            self.target_contexts[w]
                .iter()
                .zip(context)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let mut best = (first_idle, shared(first_idle));
        for w in self.in_use().filter(|&w| w > first_idle) {
            if self.targets[w] == WorkerState::Idle {
                let s = shared(w);
                if s > best.1 {
                    best = (w, s);
                }
            }
        }
        best.0
    }

    pub(super) fn draft_probs(&self, drafts: usize) -> Option<ProbTable> {
        if drafts == 0 || !self.plan.decoding.rule.needs_draft_probs() {
            return None;
        }
        let rows: Option<Vec<&Vec<f32>>> = self.chain_probs[..drafts]
            .iter()
            .map(Option::as_ref)
            .collect();
        // A drafter that omitted its distributions gets its drafts verified
        // without them, which the rule refuses with a clear error.
        ProbTable::from_rows(&rows?).ok()
    }
}
