//! The state machine itself; the protocol is described in [`super`].

mod faults;
mod jobs;

use super::{Counters, Event, EventKind, JobId, Mode, Plan, Policy, WorkerRef};
use crate::verify::ProbTable;
use crate::{Error, Result, TokenId, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// One drafted token, with the drafter's distribution when the rule needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Drafted {
    /// The token.
    pub token: TokenId,
    /// The distribution it was drawn from (speculative sampling only).
    pub probs: Option<Vec<f32>>,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Draft `count` tokens after `context` on the drafter.
    Draft {
        /// The job.
        job: JobId,
        /// Verified tokens plus the chain so far.
        context: Vec<TokenId>,
        /// Drafts wanted.
        count: usize,
    },
    /// Score `context` on target worker `worker`; its last `drafts` tokens are
    /// drafts to verify.
    Verify {
        /// The job.
        job: JobId,
        /// Index of the target worker.
        worker: usize,
        /// Verified tokens plus the drafts.
        context: Vec<TokenId>,
        /// How many trailing tokens of `context` are drafts.
        drafts: usize,
        /// The drafter's distributions for those drafts (speculative sampling).
        draft_probs: Option<ProbTable>,
    },
    /// Stop a job at its next safe point.
    Cancel {
        /// The job.
        job: JobId,
        /// Where it runs.
        worker: WorkerRef,
    },
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence token was verified.
    Eos,
    /// The token budget is spent.
    MaxTokens,
    /// The caller cancelled the request.
    Cancelled,
    /// No target worker is left; the message says why.
    Failed(String),
}

/// What one of the machine's workers is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Idle,
    Busy(JobId),
    Retired,
}

#[derive(Debug, Clone)]
struct LiveJob {
    worker: WorkerRef,
    epoch: u64,
    start: usize,
    end: usize,
    preempted: bool,
}

#[derive(Debug, Clone, Copy)]
struct QueuedJob {
    job: JobId,
    epoch: u64,
    end: usize,
}

/// One request's DSI, SI or non-SI generation as pure logic.
#[derive(Debug)]
pub struct Machine {
    plan: Plan,
    prompt_len: usize,
    /// The verified prefix: prompt plus output.
    tokens: Vec<TokenId>,
    /// Drafts for positions `tokens.len()..`.
    chain: Vec<TokenId>,
    /// The drafter's distribution per chain entry (speculative sampling).
    chain_probs: Vec<Option<Vec<f32>>>,
    epoch: u64,
    mode: Mode,
    /// Drafts per verification job now.
    k: usize,
    /// Target workers in use now: the first `servers` not retired.
    servers: usize,
    /// A retune waiting for the next clean point.
    pending: Option<Policy>,
    /// Under non-SI, draft a few tokens every this many tokens (0: never),
    /// so the acceptance rate stays known while nothing drafts.
    probe_every: usize,
    /// The verified length at the last probe.
    probed_at: usize,
    drafter: WorkerState,
    targets: Vec<WorkerState>,
    /// What each target worker was last given, for cache affinity.
    target_contexts: Vec<Vec<TokenId>>,
    live: BTreeMap<JobId, LiveJob>,
    /// Verification jobs waiting for a worker; the newest is last (LIFO).
    queue: Vec<QueuedJob>,
    next_job: u64,
    stop: Option<StopReason>,
    counters: Counters,
    commands: Vec<Command>,
    events: Vec<Event>,
}

impl Machine {
    /// A machine for `prompt` under `plan`; call [`Machine::start`] next.
    pub fn new(plan: Plan, prompt: Vec<TokenId>) -> Result<Self> {
        plan.validate()?;
        if prompt.is_empty() {
            return Err(Error::InvalidParameter {
                name: "prompt",
                value: "0 tokens".into(),
                expected: "at least one token",
            });
        }
        let servers = match plan.mode {
            Mode::Si | Mode::NonSi => 1,
            Mode::Dsi => plan.servers,
        };
        Ok(Self {
            prompt_len: prompt.len(),
            tokens: prompt,
            chain: Vec::new(),
            chain_probs: Vec::new(),
            epoch: 0,
            mode: plan.mode,
            k: plan.k,
            servers,
            pending: None,
            probe_every: 0,
            probed_at: 0,
            drafter: if plan.mode.drafts() {
                WorkerState::Idle
            } else {
                WorkerState::Retired
            },
            targets: vec![WorkerState::Idle; plan.servers],
            target_contexts: vec![Vec::new(); plan.servers],
            live: BTreeMap::new(),
            queue: Vec::new(),
            next_job: 0,
            stop: None,
            counters: Counters::default(),
            commands: Vec::new(),
            events: Vec::new(),
            plan,
        })
    }

    /// Issues the first jobs (under a retune asked for before, if any).
    pub fn start(&mut self) {
        self.apply_retune();
        self.counters.epochs = 1;
        self.event(
            EventKind::Epoch,
            None,
            None,
            self.verified_len(),
            self.verified_len(),
            None,
        );
        if self.mode == Mode::Dsi {
            self.submit_verify(self.verified_len());
        }
        self.keep_busy();
    }

    /// The prompt.
    pub fn prompt(&self) -> &[TokenId] {
        &self.tokens[..self.prompt_len]
    }

    /// The generated tokens so far (prompt excluded).
    pub fn output(&self) -> &[TokenId] {
        &self.tokens[self.prompt_len..]
    }

    /// Why the generation ended, once it has.
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// What was counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The mode in effect (non-SI after a drafter failure).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The mode, lookahead and servers in effect.
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.mode,
            k: self.k,
            servers: self.servers,
        }
        .normalized()
    }

    /// Asks for `policy` from the next clean point (see the protocol's
    /// "Retuning"), checked at the next event (or at [`Machine::start`]);
    /// a later call replaces a retune not yet applied. Refused
    /// when it needs the drafter after it failed, more servers than the
    /// plan's, or no lookahead. (A drafting policy on a pool without a
    /// drafter fails its first draft and finishes as non-SI.)
    pub fn retune(&mut self, policy: Policy) -> Result<()> {
        let policy = policy.normalized();
        if policy.mode.drafts() && self.counters.fell_back_to_nonsi {
            return Err(Error::InvalidParameter {
                name: "mode",
                value: policy.mode.to_string(),
                expected: "nonsi: the drafter failed",
            });
        }
        if policy.mode.drafts() && policy.k == 0 {
            return Err(Error::InvalidParameter {
                name: "k",
                value: "0".into(),
                expected: "k >= 1 drafts per verification",
            });
        }
        if policy.servers == 0 || policy.servers > self.plan.servers {
            return Err(Error::InvalidParameter {
                name: "servers",
                value: policy.servers.to_string(),
                expected: "between 1 and the plan's servers",
            });
        }
        self.pending = (policy != self.policy()).then_some(policy);
        Ok(())
    }

    /// Under non-SI, drafts [`Machine::PROBE_DRAFTS`] tokens every `tokens`
    /// tokens (0 turns it off) beside the target's steps. The target still
    /// decides every token; each probe draft is only compared with it, as
    /// `accepted_tokens` or `rejected_drafts`, so a tuner keeps an
    /// acceptance estimate while non-SI runs.
    pub fn probe_every(&mut self, tokens: usize) {
        self.probe_every = tokens;
        self.probed_at = self.verified_len();
        if tokens > 0 && self.drafter == WorkerState::Retired && !self.counters.fell_back_to_nonsi {
            self.drafter = WorkerState::Idle;
        }
    }

    /// Drafts per non-SI probe.
    pub const PROBE_DRAFTS: usize = 4;

    /// Commands issued since the last call, in order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// Events since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The drafter delivered `drafts` for `job`.
    pub fn on_drafted(&mut self, job: JobId, drafts: Vec<Drafted>) {
        let Some(live) = self.finish_job(job) else {
            return;
        };
        self.counters.drafts += 1;
        self.counters.draft_tokens += drafts.len() as u64;
        if live.preempted || live.epoch != self.epoch || self.stop.is_some() {
            self.counters.wasted_drafts += 1;
            self.job_event(EventKind::Stale, job, &live, None);
            self.keep_busy();
            return;
        }
        let end = live.start + drafts.len();
        self.event(
            EventKind::Finished,
            Some(job),
            Some(live.worker),
            live.start,
            end,
            None,
        );
        // Positions the target revealed while the batch was being drafted
        // (a bonus token beyond an empty chain) must match the drafts.
        let known = self.frontier().saturating_sub(live.start).min(drafts.len());
        for (i, draft) in drafts[..known].iter().enumerate() {
            if draft.token != self.tokens[live.start + i] {
                self.counters.wasted_drafts += 1;
                self.counters.rejected_drafts += 1;
                self.new_epoch();
                self.keep_busy();
                return;
            }
        }
        let appended = drafts.len() - known;
        for draft in drafts.into_iter().skip(known) {
            self.chain.push(draft.token);
            self.chain_probs.push(draft.probs);
        }
        if appended > 0 && self.mode.drafts() {
            self.submit_verify(self.frontier());
        }
        self.keep_busy();
    }

    /// A target worker returned `verdict` for `job`.
    pub fn on_verified(&mut self, job: JobId, verdict: Verdict) {
        let Some(live) = self.finish_job(job) else {
            return;
        };
        let stale = live.preempted || live.epoch != self.epoch || self.stop.is_some();
        if stale {
            self.counters.wasted_target_forwards += 1;
            self.job_event(EventKind::Stale, job, &live, None);
            self.keep_busy();
            return;
        }
        self.counters.jobs_finished += 1;
        self.counters
            .record_verdict(verdict.drafted, verdict.accepted);
        self.job_event(EventKind::Finished, job, &live, Some(verdict.accepted));
        let decided = live.start + verdict.accepted.min(live.end - live.start);
        if decided < self.verified_len() {
            // Everything this job reveals is already known.
            self.counters.wasted_target_forwards += 1;
        } else {
            let before = self.verified_len();
            let confirmed = decided - before;
            self.commit_chain(confirmed);
            let late_bonus =
                verdict.drafted > 0 && verdict.all_accepted() && !self.chain.is_empty();
            if self.plan.early_bonus || !late_bonus {
                self.decide(verdict.next_token);
            }
            self.event(
                EventKind::Committed,
                None,
                None,
                before,
                self.verified_len(),
                None,
            );
            self.check_stop();
        }
        self.keep_busy();
    }

    /// A worker stopped `job` after a `Cancel`; `ran` tells whether it had
    /// started computing.
    pub fn on_cancelled(&mut self, job: JobId, ran: bool) {
        let Some(live) = self.finish_job(job) else {
            return;
        };
        if ran {
            match live.worker {
                WorkerRef::Target(_) => self.counters.wasted_target_forwards += 1,
                WorkerRef::Drafter => self.counters.wasted_drafts += 1,
            }
        }
        self.keep_busy();
    }

    /// The caller gave up on the request: cancel everything.
    pub fn cancel(&mut self) {
        if self.stop.is_none() {
            self.finish(StopReason::Cancelled);
        }
    }

    fn verified_len(&self) -> usize {
        self.tokens.len()
    }

    fn frontier(&self) -> usize {
        self.tokens.len() + self.chain.len()
    }

    /// The last position whose token may be drafted: the final token of the
    /// budget always comes from the target (as in the paper's simulator).
    fn draft_limit(&self) -> usize {
        self.prompt_len + self.plan.max_new_tokens - 1
    }

    fn draft_room(&self) -> usize {
        if self.chain.iter().any(|t| self.plan.eos.contains(t)) {
            return 0;
        }
        self.draft_limit().saturating_sub(self.frontier())
    }

    fn new_job(&mut self) -> JobId {
        self.next_job += 1;
        JobId(self.next_job)
    }

    /// Removes a job from the live set and frees its worker; `None` for a job
    /// this machine does not know (a report from a previous request).
    fn finish_job(&mut self, job: JobId) -> Option<LiveJob> {
        let live = self.live.remove(&job)?;
        match live.worker {
            WorkerRef::Drafter if self.drafter == WorkerState::Busy(job) => {
                self.drafter = WorkerState::Idle
            }
            WorkerRef::Target(w) if self.targets[w] == WorkerState::Busy(job) => {
                self.targets[w] = WorkerState::Idle;
            }
            _ => {}
        }
        Some(live)
    }

    /// Moves the first `n` drafts of the chain into the verified prefix.
    fn commit_chain(&mut self, n: usize) {
        self.tokens.extend(self.chain.drain(..n));
        self.chain_probs.drain(..n);
        self.counters.accepted_tokens += n as u64;
    }

    /// The target's token at the first undecided position: it either
    /// confirms the next draft or ends the epoch.
    fn decide(&mut self, token: TokenId) {
        match self.chain.first() {
            Some(&draft) if draft == token => self.commit_chain(1),
            Some(_) => {
                self.tokens.push(token);
                self.counters.target_tokens += 1;
                self.counters.rejected_drafts += 1;
                self.new_epoch();
            }
            None => {
                self.tokens.push(token);
                self.counters.target_tokens += 1;
            }
        }
    }

    /// Ends the epoch: preempts every job built on the old chain and starts
    /// over from the verified prefix.
    fn new_epoch(&mut self) {
        self.epoch += 1;
        self.counters.epochs += 1;
        self.chain.clear();
        self.chain_probs.clear();
        self.drop_queue();
        self.preempt_live();
        self.apply_retune();
        let v = self.verified_len();
        self.event(EventKind::Epoch, None, None, v, v, None);
        if self.mode == Mode::Dsi && self.stop.is_none() {
            self.submit_verify(v);
        }
    }

    /// Puts a pending retune in effect. Called where no job of the epoch
    /// runs or waits: at a new epoch, after the old one's were preempted, or
    /// from `keep_busy` at an idle point.
    fn apply_retune(&mut self) {
        let Some(policy) = self.pending.take() else {
            return;
        };
        self.mode = policy.mode;
        self.k = policy.k;
        self.servers = policy.servers;
        if policy.mode.drafts() && self.drafter == WorkerState::Retired {
            self.drafter = WorkerState::Idle;
        }
    }

    fn drop_queue(&mut self) {
        for queued in std::mem::take(&mut self.queue) {
            self.drop_queued(queued);
        }
    }

    fn preempt_live(&mut self) {
        let ids: Vec<JobId> = self
            .live
            .iter()
            .filter(|(_, live)| !live.preempted)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let Some(live) = self.live.get_mut(&id) else {
                continue;
            };
            live.preempted = true;
            let (worker, start, end) = (live.worker, live.start, live.end);
            match worker {
                WorkerRef::Drafter => {
                    if self.drafter == WorkerState::Busy(id) {
                        self.drafter = WorkerState::Idle;
                    }
                }
                WorkerRef::Target(w) => {
                    self.counters.jobs_preempted += 1;
                    if self.targets[w] == WorkerState::Busy(id) {
                        self.targets[w] = WorkerState::Idle;
                    }
                }
            }
            self.commands.push(Command::Cancel { job: id, worker });
            self.event(
                EventKind::Preempted,
                Some(id),
                Some(worker),
                start,
                end,
                None,
            );
        }
    }

    fn check_stop(&mut self) {
        let output = &self.tokens[self.prompt_len..];
        if let Some(i) = output.iter().position(|t| self.plan.eos.contains(t)) {
            self.tokens.truncate(self.prompt_len + i);
            self.finish(StopReason::Eos);
        } else if output.len() >= self.plan.max_new_tokens {
            self.tokens
                .truncate(self.prompt_len + self.plan.max_new_tokens);
            self.finish(StopReason::MaxTokens);
        }
    }

    fn finish(&mut self, reason: StopReason) {
        self.stop = Some(reason);
        self.chain.clear();
        self.chain_probs.clear();
        self.drop_queue();
        self.preempt_live();
    }

    fn job_event(&mut self, kind: EventKind, job: JobId, live: &LiveJob, accepted: Option<usize>) {
        self.event(
            kind,
            Some(job),
            Some(live.worker),
            live.start,
            live.end,
            accepted,
        );
    }

    fn event(
        &mut self,
        kind: EventKind,
        job: Option<JobId>,
        worker: Option<WorkerRef>,
        start: usize,
        end: usize,
        accepted: Option<usize>,
    ) {
        self.events.push(Event {
            kind,
            job,
            worker,
            epoch: self.epoch,
            start,
            end,
            accepted,
        });
    }
}
