//! The driver of one request: carries out the state machine's commands on
//! worker threads and feeds their reports back, on the async runtime.
//!
//! The driver owns every time-related concern the pure machine leaves out:
//! job deadlines (a hung worker is retired), timestamps for the timeline,
//! busy time per worker, overlap, time to first token and the scheduling
//! overhead. Dropping it cancels every job it started.

use crate::error::Result;
use crate::memory::Reservation;
use crate::request::{Generation, Update};
use crate::stats::{AutoStats, Stats, WorkerStats, median};
use crate::task::{Report, ReportKind, Task};
use crate::timeline::TimelineRecord;
use crate::tune::{self, PriorSource, Tuning};
use crate::worker::WorkerHandle;
use crate::workers::Workers;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::sampling::{Decoding, TokenLogprobs};
use dsi_core::schedule::{
    Command, Dispatch, Event, EventKind, JobId, Machine, Mode, Plan, StopReason, WorkerRef,
};
use dsi_core::tune::Chooser;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A job handed to a worker and not yet reported back.
#[derive(Debug)]
struct LiveTask {
    cancel: CancelFlag,
    /// The pool's worker (target indices are the pool's, not the machine's).
    worker: WorkerRef,
    /// When the worker is taken as hung, cancelled or not: a live worker
    /// acknowledges a cancel long before it.
    deadline: tokio::time::Instant,
    /// When the event that made the job runnable happened.
    cause: Instant,
    started: Option<Instant>,
    epoch: u64,
    start: usize,
    end: usize,
}

/// Tokens between non-SI probes under `auto` (see `Machine::probe_every`):
/// the first interval, doubled after every probe whose drafts all failed
/// (a useless drafter costs ever less), back to the first after one that
/// was accepted, never more than the last.
const PROBE_EVERY: usize = 16;
const PROBE_EVERY_MAX: usize = 256;

/// `auto` while a request runs: its chooser and where its prior came from.
struct Auto {
    tuning: Arc<Tuning>,
    chooser: Option<Chooser>,
    /// Tokens between non-SI probes now.
    probe_every: usize,
    prior: f64,
    prior_from: PriorSource,
}

/// Jobs per worker and busy time; index 0 is the drafter.
#[derive(Debug, Default, Clone, Copy)]
struct Busy {
    jobs: u64,
    time: Duration,
}

pub(crate) struct Run<'p, S> {
    pool: &'p Workers,
    request: u64,
    began: Instant,
    machine: Machine,
    decoding: Decoding,
    k: usize,
    servers: usize,
    reply: UnboundedSender<Report>,
    reports: UnboundedReceiver<Report>,
    live: HashMap<JobId, LiveTask>,
    cause: Instant,
    overhead_us: Vec<f64>,
    busy: Vec<Busy>,
    running: usize,
    max_running: usize,
    streamed: usize,
    first_token: Option<Instant>,
    /// Pool target index of each of the machine's servers.
    placement: Vec<usize>,
    /// This request's KV memory, returned once every worker freed its cache.
    reservation: Option<Reservation>,
    auto: Option<Auto>,
    /// The pool's tuning, whose history this request's decisions feed.
    tuning: Option<Arc<Tuning>>,
    /// Accepted and rejected drafts already fed to it.
    decided: (u64, u64),
    /// Log probabilities of the output's tokens, when asked for.
    logprobs: Vec<TokenLogprobs>,
    sink: S,
}

impl<'p, S: FnMut(Update<'_>) + Send> Run<'p, S> {
    pub(crate) fn new(
        pool: &'p Workers,
        request: u64,
        plan: Plan,
        prompt: Vec<TokenId>,
        placement: Vec<usize>,
        reservation: Option<Reservation>,
        sink: S,
    ) -> Result<Self> {
        let mut plan = plan;
        plan.decoding = plan.decoding.for_prompt(prompt.len());
        let (decoding, k, servers) = (plan.decoding.clone(), plan.k, plan.servers);
        let machine = Machine::new(plan, prompt)?;
        let (reply, reports) = unbounded_channel();
        let began = Instant::now();
        Ok(Self {
            busy: vec![Busy::default(); pool.targets.len() + 1],
            pool,
            request,
            began,
            machine,
            decoding,
            k,
            servers,
            reply,
            reports,
            live: HashMap::new(),
            cause: began,
            overhead_us: Vec::new(),
            running: 0,
            max_running: 0,
            streamed: 0,
            first_token: None,
            placement,
            reservation,
            auto: None,
            tuning: None,
            decided: (0, 0),
            logprobs: Vec::new(),
            sink,
        })
    }

    /// Records the request's decided drafts in the pool's `tuning` history
    /// (what `auto` requests start from), whatever its mode; with `auto`,
    /// lets it choose the policy too.
    pub(crate) fn with_tuning(mut self, tuning: Option<Arc<Tuning>>, auto: bool) -> Self {
        self.auto = tuning.clone().filter(|_| auto).map(|tuning| Auto {
            tuning,
            chooser: None,
            probe_every: PROBE_EVERY,
            prior: 0.5,
            prior_from: PriorSource::Default,
        });
        self.tuning = tuning;
        self
    }

    /// Under `auto`: the starting estimate (the pool's history, else a
    /// probe on the prompt), the first choice, and non-SI probing.
    async fn choose_first(&mut self) -> Result<()> {
        let Some(auto) = &mut self.auto else {
            return Ok(());
        };
        let (prior, from) = match auto.tuning.history() {
            Some(a) => (a, PriorSource::History),
            // The choice hardly depends on it: start at once.
            None if !auto.tuning.table().acceptance_matters() => (0.5, PriorSource::Default),
            None => {
                let target = self.placement.first().copied().unwrap_or(0);
                let prompt = self.machine.prompt().to_vec();
                // A worker failing the probe fails its jobs of the request
                // the same way later; the machine handles that (a failed
                // drafter: non-SI), so the probe just gives no evidence.
                match tune::probe(self.pool, self.request, target, &prompt).await {
                    Ok(Some((accepted, rejected))) if accepted + rejected > 0 => {
                        auto.tuning.record(accepted, rejected);
                        // Laplace's rule: a few windows are weak evidence.
                        let a = (accepted as f64 + 1.0) / ((accepted + rejected) as f64 + 2.0);
                        (a, PriorSource::Probe)
                    }
                    _ => (0.5, PriorSource::Default),
                }
            }
        };
        auto.prior = prior;
        auto.prior_from = from;
        let chooser = Chooser::new(Arc::clone(auto.tuning.table()), prior);
        let policy = chooser.policy();
        auto.chooser = Some(chooser);
        self.retune(policy)?;
        if self.pool.drafter.is_some() {
            self.machine.probe_every(PROBE_EVERY);
        }
        Ok(())
    }

    /// Feeds the drafts decided since the last call to the pool's history
    /// (any mode's are evidence) and, under `auto`, to the chooser, and
    /// retunes when it switches.
    fn tune(&mut self) {
        let counters = self.machine.counters();
        let now = (counters.accepted_tokens, counters.rejected_drafts);
        let (accepted, rejected) = (now.0 - self.decided.0, now.1 - self.decided.1);
        if accepted + rejected == 0 {
            return;
        }
        self.decided = now;
        if let Some(tuning) = &self.tuning {
            tuning.record(accepted, rejected);
        }
        let Some(auto) = self.auto.as_mut() else {
            return;
        };
        if self.machine.policy().mode == Mode::NonSi {
            auto.probe_every = if accepted == 0 {
                (auto.probe_every * 2).min(PROBE_EVERY_MAX)
            } else {
                PROBE_EVERY
            };
            self.machine.probe_every(auto.probe_every);
        }
        let Some(chooser) = auto.chooser.as_mut() else {
            return;
        };
        if let Some(policy) = chooser.observe(accepted, rejected) {
            // A policy the machine refuses (the drafter failed) keeps the
            // current one; the machine already finishes as non-SI.
            let _ = self.retune(policy);
        }
    }

    fn retune(&mut self, mut policy: dsi_core::schedule::Policy) -> Result<()> {
        policy.servers = policy.servers.min(self.servers);
        self.machine.retune(policy)?;
        Ok(())
    }

    /// Runs to the end; `stop` raised (by the sink, say) ends the request
    /// as cancelled at once, with its stats.
    pub(crate) async fn finish(mut self, stop: &CancelFlag) -> Result<Generation> {
        self.choose_first().await?;
        self.machine.start();
        loop {
            self.apply();
            if stop.is_cancelled() && self.machine.stop_reason().is_none() {
                self.machine.cancel();
                self.apply();
            }
            if self.machine.stop_reason().is_some() {
                break;
            }
            let deadline = self.live.values().filter_map(|t| self.deadline(t)).min();
            tokio::select! {
                report = self.reports.recv() => match report {
                    Some(report) => self.on_report(report),
                    // Unreachable while `self.reply` lives; end cleanly anyway.
                    None => self.machine.cancel(),
                },
                () = wait_until(deadline) => self.expire(),
            }
        }
        self.apply();
        Ok(self.generation())
    }

    /// Carries out the machine's commands until it has none, then publishes
    /// its events and the newly verified tokens.
    fn apply(&mut self) {
        loop {
            let commands = self.machine.take_commands();
            if commands.is_empty() {
                break;
            }
            for command in commands {
                self.execute(command);
            }
        }
        for mut event in self.machine.take_events() {
            event.worker = event.worker.map(|w| self.in_pool(w));
            self.publish(event);
        }
        let output = self.machine.output();
        if output.len() > self.streamed {
            self.first_token.get_or_insert_with(Instant::now);
            let new = output[self.streamed..].to_vec();
            if self.decoding.logprobs.is_some() && self.logprobs.len() >= output.len() {
                (self.sink)(Update::Logprobs(
                    &self.logprobs[self.streamed..output.len()],
                ));
            }
            self.streamed = output.len();
            (self.sink)(Update::Tokens(&new));
        }
    }

    fn execute(&mut self, command: Command) {
        if let Command::Cancel { job, .. } = command {
            if let Some(task) = self.live.get(&job) {
                task.cancel.cancel();
            }
            return;
        }
        let Some(Dispatch {
            job,
            worker,
            context,
            work,
        }) = command.into_dispatch()
        else {
            return;
        };
        let (start, end) = work.span(context.len());
        let worker = self.in_pool(worker);
        let Some(handle) = self.handle(worker) else {
            self.machine
                .on_failed(job, "the pool has no such worker".into());
            return;
        };
        let cancel = CancelFlag::new();
        let task = Task {
            request: self.request,
            job,
            context,
            work,
            decoding: self.decoding.clone(),
            cancel: cancel.clone(),
            reply: self.reply.clone(),
        };
        if !handle.send(task) {
            self.machine
                .on_failed(job, format!("worker {} has stopped", handle.name()));
            return;
        }
        handle.load().fetch_add(1, Ordering::Relaxed);
        self.live.insert(
            job,
            LiveTask {
                cancel,
                worker,
                deadline: tokio::time::Instant::now() + self.pool.job_timeout,
                cause: self.cause,
                started: None,
                epoch: self.machine.epoch(),
                start,
                end,
            },
        );
    }

    fn on_report(&mut self, report: Report) {
        if let ReportKind::Started = report.kind {
            let Some(task) = self.live.get_mut(&report.job) else {
                return;
            };
            task.started = Some(report.at);
            // Time spent queued behind other requests' tasks is not the
            // worker's: the deadline runs from the start.
            task.deadline = tokio::time::Instant::now() + self.pool.job_timeout;
            let overhead = report.at.saturating_duration_since(task.cause);
            self.overhead_us.push(overhead.as_secs_f64() * 1e6);
            let event = Event {
                kind: EventKind::Started,
                job: Some(report.job),
                worker: Some(task.worker),
                epoch: task.epoch,
                start: task.start,
                end: task.end,
                accepted: None,
            };
            self.busy[slot(task.worker)].jobs += 1;
            self.running += 1;
            self.max_running = self.max_running.max(self.running);
            self.publish(event);
            return;
        }
        let Some(task) = self.end(report.job) else {
            // Its deadline passed earlier; the machine has moved on.
            return;
        };
        if let Some(started) = task.started {
            self.busy[slot(task.worker)].time += report.at.saturating_duration_since(started);
            self.running -= 1;
        }
        self.cause = report.at;
        let job = report.job;
        match report.kind {
            ReportKind::Started => {}
            ReportKind::Drafted(drafts) => self.machine.on_drafted(job, drafts),
            ReportKind::Verified { verdict, logprobs } => {
                let before = self.machine.output().len();
                self.machine.on_verified(job, verdict);
                if let Some(rows) = logprobs {
                    self.keep_logprobs(task.start, before, rows);
                }
            }
            ReportKind::Cancelled { ran } => self.machine.on_cancelled(job, ran),
            ReportKind::Failed(message) => self.machine.on_failed(job, message),
        }
        self.tune();
    }

    /// Keeps the log probabilities of the tokens a verification just
    /// committed: every token committed while the machine takes one report
    /// was revealed by that report, whose rows start at absolute position
    /// `start`; `before` is the output's length before it.
    fn keep_logprobs(&mut self, start: usize, before: usize, rows: Vec<TokenLogprobs>) {
        let prompt = self.machine.prompt().len();
        let output = self.machine.output();
        self.logprobs.truncate(before);
        for (i, &token) in output.iter().enumerate().skip(before) {
            match (prompt + i)
                .checked_sub(start)
                .and_then(|row| rows.get(row))
            {
                Some(row) if row.token == token => self.logprobs.push(row.clone()),
                // The invariant above broke: report nothing rather than
                // another position's numbers.
                _ => {
                    self.logprobs.clear();
                    self.decoding.logprobs = None;
                    return;
                }
            }
        }
    }

    /// Retires the workers whose jobs passed their deadline, cancelled
    /// jobs included: a worker that never acknowledges a cancel is hung
    /// too, and would hold every later job sent to it.
    fn expire(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<JobId> = self
            .live
            .iter()
            .filter(|(_, t)| self.deadline(t).is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for job in expired {
            if let Some(task) = self.end(job) {
                task.cancel.cancel();
                if task.started.is_some() {
                    self.running -= 1;
                }
                self.cause = Instant::now();
                self.machine.on_timed_out(
                    job,
                    format!(
                        "no result within {} ms; the worker may be hung",
                        self.pool.job_timeout.as_millis()
                    ),
                );
            }
        }
    }

    fn publish(&mut self, event: Event) {
        let device = event
            .worker
            .and_then(|w| self.handle(w))
            .map(|h| h.name().to_string());
        let record = TimelineRecord {
            request: self.request,
            t_ms: self.began.elapsed().as_secs_f64() * 1e3,
            device,
            event,
        };
        (self.sink)(Update::Timeline(&record));
        // Nobody listening is fine.
        let _ = self.pool.timeline.send(record);
    }

    fn generation(&mut self) -> Generation {
        let total = self.began.elapsed();
        let tokens = self.machine.output().to_vec();
        let mut stats = Stats::from_counters(self.machine.counters());
        let policy = self.machine.policy();
        stats.mode = policy.mode;
        stats.k = if self.auto.is_some() {
            policy.k
        } else {
            self.k
        };
        stats.targets = if self.auto.is_some() {
            policy.servers
        } else {
            self.servers
        };
        let after_first = match self.first_token {
            Some(first) if tokens.len() > 1 => {
                first.elapsed().as_secs_f64() * 1e3 / (tokens.len() - 1) as f64
            }
            _ => 0.0,
        };
        let counters = self.machine.counters();
        let decided = counters.accepted_tokens + counters.rejected_drafts;
        let overall = if decided > 0 {
            counters.accepted_tokens as f64 / decided as f64
        } else {
            self.auto.as_ref().map_or(0.5, |a| a.prior)
        };
        stats.auto = self.auto.as_ref().and_then(|auto| {
            let chooser = auto.chooser.as_ref()?;
            Some(AutoStats {
                prior: auto.prior,
                prior_from: auto.prior_from,
                acceptance: chooser.acceptance(),
                decisions: chooser.decisions().to_vec(),
                // At the request's own rate over all its drafts, not the
                // windowed estimate (which weighs its last dozen only).
                predicted_ms_per_token: auto
                    .tuning
                    .table()
                    .ms_per_token(chooser.policy(), overall)
                    .unwrap_or(0.0),
                measured_ms_per_token: after_first,
            })
        });
        stats.new_tokens = tokens.len();
        stats.max_concurrent_jobs = self.max_running;
        stats.total_ms = total.as_secs_f64() * 1e3;
        stats.ttft_ms = self
            .first_token
            .map_or(0.0, |t| (t - self.began).as_secs_f64() * 1e3);
        stats.tokens_per_s = if total.is_zero() {
            0.0
        } else {
            tokens.len() as f64 / total.as_secs_f64()
        };
        stats.overhead_us_median = median(&mut self.overhead_us);
        stats.workers = self
            .busy
            .iter()
            .enumerate()
            .filter_map(|(i, busy)| {
                let (name, role) = if i == 0 {
                    (self.pool.drafter.as_ref()?.name(), "drafter")
                } else {
                    (self.pool.targets[i - 1].name(), "target")
                };
                Some(WorkerStats {
                    name: name.to_string(),
                    role,
                    jobs: busy.jobs,
                    busy_ms: busy.time.as_secs_f64() * 1e3,
                })
            })
            .collect();
        let stop = self
            .machine
            .stop_reason()
            .cloned()
            .unwrap_or(StopReason::Cancelled);
        let logprobs = self.decoding.logprobs.map(|_| {
            let mut logprobs = std::mem::take(&mut self.logprobs);
            logprobs.truncate(tokens.len());
            logprobs
        });
        Generation {
            tokens,
            logprobs,
            stop,
            stats,
        }
    }
}

impl<'p, S> Run<'p, S> {
    /// When `task` is late: its timeout from when it started (or was
    /// queued), pushed back while its worker keeps moving. A job waiting
    /// behind other requests' work, or whose prefill runs in chunks between
    /// them, is late only once its worker has not moved for the timeout (a
    /// forward that long, or a hung worker), however long the queue.
    fn deadline(&self, task: &LiveTask) -> Option<tokio::time::Instant> {
        let deadline = task.deadline;
        let moved = self.handle(task.worker)?.last_progress();
        Some(match moved {
            Some(moved) => {
                deadline.max(tokio::time::Instant::from_std(moved) + self.pool.job_timeout)
            }
            None => deadline,
        })
    }

    /// The pool's worker for the machine's `worker`.
    fn in_pool(&self, worker: WorkerRef) -> WorkerRef {
        match worker {
            WorkerRef::Target(i) => {
                WorkerRef::Target(self.placement.get(i).copied().unwrap_or(usize::MAX))
            }
            drafter => drafter,
        }
    }

    fn handle(&self, worker: WorkerRef) -> Option<&'p WorkerHandle> {
        match worker {
            WorkerRef::Drafter => self.pool.drafter.as_ref(),
            WorkerRef::Target(i) => self.pool.targets.get(i),
        }
    }

    /// Forgets a task that reported its end (or was given up on).
    fn end(&mut self, job: JobId) -> Option<LiveTask> {
        let task = self.live.remove(&job)?;
        if let Some(handle) = self.handle(task.worker) {
            handle.load().fetch_sub(1, Ordering::Relaxed);
        }
        Some(task)
    }
}

impl<S> Drop for Run<'_, S> {
    /// A request that ends, or is dropped mid-way, leaves no job running
    /// and no KV cache held for it.
    fn drop(&mut self) {
        let jobs: Vec<JobId> = self.live.keys().copied().collect();
        for job in jobs {
            if let Some(task) = self.end(job) {
                task.cancel.cancel();
            }
        }
        for worker in self.pool.drafter.iter().chain(&self.pool.targets) {
            worker.release(self.request, self.reservation.clone());
        }
    }
}

fn slot(worker: WorkerRef) -> usize {
    match worker {
        WorkerRef::Drafter => 0,
        WorkerRef::Target(i) => i + 1,
    }
}

async fn wait_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
