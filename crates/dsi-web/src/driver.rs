//! The driver of one request in the browser: carries out the state
//! machine's commands on the page's workers and feeds their reports back,
//! all on one thread.
//!
//! Each worker (the drafter, each target) is its own task on the executor
//! (`serve`), with a queue of jobs in order; the driver is another. The
//! machine decides everything about speculation (epochs, preemption, which
//! target verifies what), so non-SI, SI and DSI here are the server's,
//! token for token. What the server's driver adds for a shared pool
//! (deadlines for hung workers, memory budgets, tuning) has no job on a
//! page with one request at a time.

use crate::error::WebError;
use crate::serve::serve;
use crate::task::{Report, ReportKind, Task};
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::{AsyncKvModel, SeqId};
use dsi_core::sampling::Decoding;
use dsi_core::schedule::{
    Command, Counters, Dispatch, Event, EventKind, JobId, Machine, Mode, Plan, StopReason,
    TimelineRecord, WorkerRef,
};
use dsi_core::worker::KvSync;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_util::StreamExt;
use futures_util::future::{join, join_all};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// One worker of the page: a model behind `dsi-core`'s KV-cache
/// synchronization, and the name its timeline lane shows.
#[derive(Debug)]
pub struct Worker<M> {
    name: String,
    sync: KvSync<M>,
}

impl<M: AsyncKvModel> Worker<M> {
    /// A worker named `name` over `model`, whose caches start empty.
    pub fn new(name: impl Into<String>, model: M) -> Self {
        Self {
            name: name.into(),
            sync: KvSync::new(model),
        }
    }

    /// Its name on the timeline.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens its cache holds for `request` (empty once a request ended).
    pub fn held(&self, request: SeqId) -> &[TokenId] {
        self.sync.held(request)
    }
}

/// What a request reports while it runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Newly verified tokens, in order.
    Tokens(&'a [TokenId]),
    /// A timeline entry, in the shape the dashboard draws.
    Timeline(&'a TimelineRecord),
}

/// What a request produced and what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The new tokens (end-of-sequence excluded).
    pub tokens: Vec<TokenId>,
    /// Why it stopped.
    pub stop: StopReason,
    /// The algorithm.
    pub mode: Mode,
    /// Drafts per verification job.
    pub k: usize,
    /// Target workers it used.
    pub targets: usize,
    /// The state machine's counters: drafts, acceptances, preemptions.
    pub counters: Counters,
    /// Wall time of the whole request.
    pub total_ms: f64,
    /// Time to the first verified token.
    pub ttft_ms: f64,
    /// New tokens per second of wall time.
    pub tokens_per_s: f64,
}

/// Milliseconds since the request began: `performance.now()` in a browser.
#[derive(Debug)]
pub(crate) struct Clock(web_time::Instant);

impl Clock {
    pub(crate) fn ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1e3
    }
}

/// Generates `prompt`'s continuation as `plan` says, with `drafter` (needed
/// when the mode drafts) and the first `plan.servers` of `targets` (each
/// with its own caches; on a page they share one device). `request` names
/// the workers' caches for it; they are freed when it ends. `on` sees the
/// tokens and the timeline as they happen.
pub async fn generate<D: AsyncKvModel, T: AsyncKvModel>(
    drafter: Option<&mut Worker<D>>,
    targets: &mut [Worker<T>],
    request: SeqId,
    plan: Plan,
    prompt: Vec<TokenId>,
    on: impl FnMut(Progress<'_>),
) -> Result<Outcome, WebError> {
    let mut plan = plan;
    if plan.servers == 0 || plan.servers > targets.len() {
        return Err(WebError::Settings(format!(
            "{} target workers asked for, {} loaded: ask for 1 to {}",
            plan.servers,
            targets.len(),
            targets.len()
        )));
    }
    if plan.mode.drafts() && drafter.is_none() {
        return Err(WebError::Settings(format!(
            "{} needs a drafter; load one or run nonsi",
            plan.mode
        )));
    }
    plan.decoding = plan.decoding.for_prompt(prompt.len());
    let decoding = plan.decoding.clone();
    let (mode, k, servers) = (plan.mode, plan.k, plan.servers);
    let machine = Machine::new(plan, prompt)?;
    let clock = Clock(web_time::Instant::now());
    let (reply, reports) = unbounded();
    let mut lanes = Lanes {
        request,
        decoding: &decoding,
        clock: &clock,
        reply,
        names: Vec::new(),
        workers: Vec::new(),
    };
    let drafter_inbox = match drafter.filter(|_| mode.drafts()) {
        Some(drafter) => Some(lanes.add(drafter)),
        None => {
            lanes.names.push(String::new());
            None
        }
    };
    let target_inboxes: Vec<_> = targets
        .iter_mut()
        .take(servers)
        .map(|target| lanes.add(target))
        .collect();
    let Lanes {
        names,
        workers,
        reply,
        ..
    } = lanes;
    // The workers hold the only senders: when all are gone, so are reports.
    drop(reply);
    let drive = Drive {
        machine,
        mode,
        k,
        servers,
        request,
        drafter: drafter_inbox,
        targets: target_inboxes,
        names,
        live: HashMap::new(),
        clock: &clock,
        streamed: 0,
        first_token_ms: None,
        on,
    };
    let (outcome, _) = join(drive.run(reports), join_all(workers)).await;
    Ok(outcome)
}

/// The page's workers as they start: each one's task, its inbox and its
/// name on the timeline (the drafter's first, empty without one).
struct Lanes<'a> {
    request: SeqId,
    decoding: &'a Decoding,
    clock: &'a Clock,
    reply: UnboundedSender<Report>,
    names: Vec<String>,
    workers: Vec<Pin<Box<dyn Future<Output = ()> + 'a>>>,
}

impl<'a> Lanes<'a> {
    /// Starts `worker`'s task; returns its inbox.
    fn add<M: AsyncKvModel>(&mut self, worker: &'a mut Worker<M>) -> UnboundedSender<Task> {
        let (inbox, tasks) = unbounded();
        self.names.push(worker.name.clone());
        self.workers.push(Box::pin(serve(
            &mut worker.sync,
            self.request,
            self.decoding,
            tasks,
            self.reply.clone(),
            self.clock,
        )));
        inbox
    }
}

/// A job handed to a worker and not yet reported back.
#[derive(Debug)]
struct LiveJob {
    cancel: CancelFlag,
    worker: WorkerRef,
    epoch: u64,
    start: usize,
    end: usize,
}

struct Drive<'c, F> {
    machine: Machine,
    mode: Mode,
    k: usize,
    servers: usize,
    request: SeqId,
    drafter: Option<UnboundedSender<Task>>,
    targets: Vec<UnboundedSender<Task>>,
    /// Timeline names: the drafter's, then each target's.
    names: Vec<String>,
    live: HashMap<JobId, LiveJob>,
    clock: &'c Clock,
    streamed: usize,
    first_token_ms: Option<f64>,
    on: F,
}

impl<F: FnMut(Progress<'_>)> Drive<'_, F> {
    /// Runs the machine to its end; returning drops the workers' inboxes,
    /// which ends them.
    async fn run(mut self, mut reports: UnboundedReceiver<Report>) -> Outcome {
        self.machine.start();
        loop {
            self.apply();
            if self.machine.stop_reason().is_some() {
                break;
            }
            match reports.next().await {
                Some(report) => self.on_report(report),
                // Every worker ended: nothing more can come.
                None => self.machine.cancel(),
            }
        }
        self.apply();
        for job in self.live.values() {
            job.cancel.cancel();
        }
        let total_ms = self.clock.ms();
        let tokens = self.machine.output().to_vec();
        let tokens_per_s = if total_ms > 0.0 {
            tokens.len() as f64 / (total_ms / 1e3)
        } else {
            0.0
        };
        Outcome {
            tokens_per_s,
            tokens,
            stop: self
                .machine
                .stop_reason()
                .cloned()
                .unwrap_or(StopReason::Cancelled),
            mode: self.mode,
            k: self.k,
            targets: self.servers,
            counters: self.machine.counters().clone(),
            total_ms,
            ttft_ms: self.first_token_ms.unwrap_or(0.0),
        }
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
        for event in self.machine.take_events() {
            self.publish(event, self.clock.ms());
        }
        let output = self.machine.output();
        if output.len() > self.streamed {
            let new = output[self.streamed..].to_vec();
            self.streamed = output.len();
            self.first_token_ms.get_or_insert_with(|| self.clock.ms());
            (self.on)(Progress::Tokens(&new));
        }
    }

    fn execute(&mut self, command: Command) {
        if let Command::Cancel { job, .. } = command {
            if let Some(live) = self.live.get(&job) {
                live.cancel.cancel();
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
        let inbox = match worker {
            WorkerRef::Drafter => self.drafter.as_ref(),
            WorkerRef::Target(i) => self.targets.get(i),
        };
        let Some(inbox) = inbox else {
            self.machine
                .on_failed(job, "the page has no such worker".into());
            return;
        };
        let cancel = CancelFlag::new();
        let task = Task {
            job,
            context,
            work,
            cancel: cancel.clone(),
        };
        if inbox.unbounded_send(task).is_err() {
            self.machine
                .on_failed(job, format!("{} has stopped", self.name(worker)));
            return;
        }
        self.live.insert(
            job,
            LiveJob {
                cancel,
                worker,
                epoch: self.machine.epoch(),
                start,
                end,
            },
        );
    }

    fn on_report(&mut self, report: Report) {
        let job = report.job;
        if let ReportKind::Started = report.kind {
            if let Some(live) = self.live.get(&job) {
                let event = Event {
                    kind: EventKind::Started,
                    job: Some(job),
                    worker: Some(live.worker),
                    epoch: live.epoch,
                    start: live.start,
                    end: live.end,
                    accepted: None,
                };
                self.publish(event, report.at_ms);
            }
            return;
        }
        if self.live.remove(&job).is_none() {
            return;
        }
        match report.kind {
            ReportKind::Started => {}
            ReportKind::Drafted(drafts) => self.machine.on_drafted(job, drafts),
            ReportKind::Verified(verdict) => self.machine.on_verified(job, verdict),
            ReportKind::Cancelled { ran } => self.machine.on_cancelled(job, ran),
            ReportKind::Failed(message) => self.machine.on_failed(job, message),
        }
    }

    fn name(&self, worker: WorkerRef) -> &str {
        let slot = match worker {
            WorkerRef::Drafter => 0,
            WorkerRef::Target(i) => i + 1,
        };
        self.names.get(slot).map_or("", String::as_str)
    }

    fn publish(&mut self, event: Event, t_ms: f64) {
        let device = event.worker.map(|w| self.name(w).to_string());
        let record = TimelineRecord {
            request: self.request,
            t_ms,
            device,
            event,
        };
        (self.on)(Progress::Timeline(&record));
    }
}
