//! Worker threads: each owns one model instance (and so one KV cache) and
//! runs its tasks in order, on its own OS thread, never on the runtime's.
//!
//! Tasks arrive on a channel and reports go back on the channel each task
//! names, so one worker serves many requests at once: it keeps a KV cache
//! per request ([`Slots`]) and takes tasks from the requests in turn
//! ([`FairQueue`]). Running each request's tasks in order is what lets the
//! scheduler treat a cancelled job's worker as free at once: the cancelled
//! job ends at its next safe point before that request's next task begins.
//! A task whose flag is already raised is skipped.

use crate::error::{Result, SchedError};
use crate::fair::FairQueue;
use crate::memory::Reservation;
use crate::roles::{CacheState, Drafter, Scorer};
use crate::slots::Slots;
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::ForwardError;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::{Drafted, JobId};
use dsi_core::verify::ProbTable;
use dsi_core::{TokenId, Verdict};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What a task asks for.
#[derive(Debug, Clone)]
pub enum Work {
    /// Draft `count` tokens after the context.
    Draft {
        /// Drafts wanted.
        count: usize,
    },
    /// Verify the last `drafts` tokens of the context.
    Verify {
        /// Trailing drafts in the context.
        drafts: usize,
        /// The drafter's distributions (speculative sampling).
        draft_probs: Option<ProbTable>,
    },
}

/// One job for one worker.
#[derive(Debug)]
pub struct Task {
    /// The request it belongs to: whose KV cache it uses and whose turn it
    /// takes.
    pub request: u64,
    /// The job.
    pub job: JobId,
    /// Verified tokens plus drafts.
    pub context: Vec<TokenId>,
    /// What to do with them.
    pub work: Work,
    /// Sampling and verification rule of the request.
    pub decoding: Decoding,
    /// Raised when the job is preempted or the request ends.
    pub cancel: CancelFlag,
    /// Where the reports go.
    pub reply: UnboundedSender<Report>,
}

/// What a worker's channel carries.
#[derive(Debug)]
pub enum Message {
    /// A job to run.
    Run(Task),
    /// The request ended: its KV cache may go (after its queued tasks).
    /// The worker drops its share of the request's memory reservation once
    /// the cache is freed.
    Release(u64, Option<Reservation>),
}

impl Message {
    /// The request it concerns.
    fn request(&self) -> u64 {
        match self {
            Message::Run(task) => task.request,
            Message::Release(request, _) => *request,
        }
    }
}

/// A worker's message about a task.
#[derive(Debug)]
pub struct Report {
    /// The job.
    pub job: JobId,
    /// When it happened, on the worker.
    pub at: Instant,
    /// What happened.
    pub kind: ReportKind,
}

/// What happened to a task.
#[derive(Debug)]
pub enum ReportKind {
    /// The worker began computing.
    Started,
    /// Drafts are ready.
    Drafted(Vec<Drafted>),
    /// The verdict on the drafts.
    Verified(Verdict),
    /// The task stopped at its flag; `ran` tells whether it had begun.
    Cancelled {
        /// True when some computation had been done.
        ran: bool,
    },
    /// The task failed; the message says why.
    Failed(String),
}

/// What a worker is.
pub enum Role {
    /// The drafter.
    Drafter(Box<dyn Drafter>),
    /// A target server.
    Target(Box<dyn Scorer>),
}

impl Role {
    /// Another instance over the same weights with an empty cache.
    pub(crate) fn fork(&self) -> Option<Role> {
        match self {
            Role::Drafter(d) => d.fork().map(Role::Drafter),
            Role::Target(t) => t.fork().map(Role::Target),
        }
    }

    /// Its KV cache, whichever role it plays.
    pub(crate) fn cache(&self) -> &dyn CacheState {
        match self {
            Role::Drafter(d) => d.as_ref(),
            Role::Target(t) => t.as_ref(),
        }
    }

    /// [`Role::cache`], to change.
    pub(crate) fn cache_mut(&mut self) -> &mut dyn CacheState {
        match self {
            Role::Drafter(d) => d.as_mut(),
            Role::Target(t) => t.as_mut(),
        }
    }
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Drafter(_) => "Role::Drafter",
            Role::Target(_) => "Role::Target",
        })
    }
}

/// The scheduler's handle on a worker: its name, its task channel, how its
/// caches grow and what they hold.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    name: String,
    device: Option<String>,
    tasks: UnboundedSender<Message>,
    footprint: Option<CacheFootprint>,
    kv_bytes: Arc<AtomicUsize>,
    load: Arc<AtomicUsize>,
    /// When the worker last took up or finished a task (see [`Progress`]);
    /// `None` for workers served elsewhere.
    progress: Option<Arc<Progress>>,
}

/// When a worker thread last moved: picked up a message or finished a
/// task. A job queued behind other requests' work is late only when its
/// worker stops moving, not when the queue is long.
#[derive(Debug)]
pub(crate) struct Progress {
    since: Instant,
    micros: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            micros: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let micros = self.since.elapsed().as_micros() as u64;
        self.micros.store(micros, Ordering::Relaxed);
    }

    /// The last time the worker moved.
    pub(crate) fn last(&self) -> Instant {
        self.since + std::time::Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

impl WorkerHandle {
    /// Starts a worker thread named `name` (a device label such as `cpu` or
    /// `cuda:1`) that runs `role`'s tasks with one KV cache for all requests.
    pub fn spawn(name: impl Into<String>, role: Role) -> Result<Self> {
        Self::spawn_with_caches(name, role, 1)
    }

    /// Like [`spawn`](Self::spawn), keeping up to `caches` KV caches (one per
    /// request, least recently used handed over past that) when the model
    /// can fork.
    pub fn spawn_with_caches(name: impl Into<String>, role: Role, caches: usize) -> Result<Self> {
        let name = name.into();
        let (tasks, inbox) = unbounded_channel();
        let footprint = role.cache().footprint();
        let kv_bytes = Arc::new(AtomicUsize::new(0));
        let progress = Arc::new(Progress::new());
        let marks = Marks {
            kv_bytes: Arc::clone(&kv_bytes),
            progress: Arc::clone(&progress),
        };
        std::thread::Builder::new()
            .name(format!("dsi-worker {name}"))
            .spawn(move || serve(Slots::new(role, caches), inbox, &marks))
            .map_err(|source| SchedError::Spawn {
                name: name.clone(),
                source,
            })?;
        Ok(Self {
            name,
            device: None,
            tasks,
            footprint,
            kv_bytes,
            load: Arc::default(),
            progress: Some(progress),
        })
    }

    /// A handle over a task channel served elsewhere (tests drive fake
    /// workers as async tasks on paused time this way).
    pub fn from_channel(name: impl Into<String>, tasks: UnboundedSender<Message>) -> Self {
        Self {
            name: name.into(),
            device: None,
            tasks,
            footprint: None,
            kv_bytes: Arc::default(),
            load: Arc::default(),
            progress: None,
        }
    }

    /// When the worker thread last moved, if it is one of ours.
    pub(crate) fn last_progress(&self) -> Option<Instant> {
        self.progress.as_ref().map(|p| p.last())
    }

    /// How this worker's caches grow (`None`: they take no budgeted memory).
    pub fn footprint(&self) -> Option<CacheFootprint> {
        self.footprint
    }

    /// Bytes this worker's caches hold now, over every request.
    pub fn kv_bytes(&self) -> usize {
        self.kv_bytes.load(Ordering::Relaxed)
    }

    /// Jobs handed to this worker and not yet reported back, over every
    /// request: what placement balances.
    pub(crate) fn load(&self) -> &AtomicUsize {
        &self.load
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names the device the worker's caches live on, whose KV budget they
    /// share with the other workers there (default: the worker's name).
    pub fn on_device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// The device whose KV budget this worker's caches count against.
    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or(&self.name)
    }

    /// Hands a task over; false if the worker is gone.
    pub(crate) fn send(&self, task: Task) -> bool {
        self.tasks.send(Message::Run(task)).is_ok()
    }

    /// Tells the worker that `request` ended, so its KV cache can go; the
    /// worker drops `reservation` after freeing it.
    pub(crate) fn release(&self, request: u64, reservation: Option<Reservation>) {
        // A worker that is gone holds no cache.
        let _ = self.tasks.send(Message::Release(request, reservation));
    }
}

/// What a worker thread publishes about itself.
struct Marks {
    kv_bytes: Arc<AtomicUsize>,
    progress: Arc<Progress>,
}

/// A worker thread's loop: until every handle is dropped and every queued
/// task is done.
fn serve(mut slots: Slots, mut inbox: UnboundedReceiver<Message>, marks: &Marks) {
    let mut queue = FairQueue::default();
    // Jobs whose prefill is under way in chunks: already reported started.
    let mut started = std::collections::HashSet::new();
    let kv_bytes = &marks.kv_bytes;
    loop {
        kv_bytes.store(slots.bytes(), Ordering::Relaxed);
        marks.progress.mark();
        while let Ok(message) = inbox.try_recv() {
            queue.push(message.request(), message);
        }
        let message = match queue.pop() {
            Some(message) => message,
            None => match inbox.blocking_recv() {
                Some(message) => message,
                None => return,
            },
        };
        // A release queues behind its request's tasks, so it comes last.
        let task = match message {
            Message::Run(task) => task,
            Message::Release(request, reservation) => {
                slots.release(request);
                kv_bytes.store(slots.bytes(), Ordering::Relaxed);
                drop(reservation);
                continue;
            }
        };
        marks.progress.mark();
        let started_before = started.remove(&task.job);
        let role = slots.get(task.request);
        let report = |kind| {
            // The request may have ended; nobody to tell then.
            let _ = task.reply.send(Report {
                job: task.job,
                at: Instant::now(),
                kind,
            });
        };
        if task.cancel.is_cancelled() {
            report(ReportKind::Cancelled {
                ran: started_before,
            });
            continue;
        }
        if !started_before {
            report(ReportKind::Started);
        }
        // A long prefill runs a chunk at a time; other requests' tasks go
        // between its chunks.
        match guarded(role, |role| prefill_step(role, &task)) {
            Ok(true) => {
                started.insert(task.job);
                let request = task.request;
                queue.push_front(request, Message::Run(task));
                continue;
            }
            Ok(false) => {}
            Err(kind) => {
                report(kind);
                continue;
            }
        }
        let kind = guarded(role, |role| run(role, &task)).unwrap_or_else(|kind| kind);
        report(kind);
    }
}

/// Runs `step` on the worker's model, turning a stop, a failure or a panic
/// into the report that says so (a panic also resets the cache, whose state
/// is then unknown).
fn guarded<T>(
    role: &mut Role,
    step: impl FnOnce(&mut Role) -> std::result::Result<T, ForwardError>,
) -> std::result::Result<T, ReportKind> {
    match catch_unwind(AssertUnwindSafe(|| step(&mut *role))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(ForwardError::Cancelled)) => Err(ReportKind::Cancelled { ran: true }),
        Ok(Err(ForwardError::Failed(message))) => Err(ReportKind::Failed(message)),
        Err(panic) => {
            role.cache_mut().reset();
            Err(ReportKind::Failed(format!(
                "the worker panicked: {}",
                panic_message(&panic)
            )))
        }
    }
}

/// Feeds one chunk of the prefix `task` needs when more than a chunk is
/// missing from the cache; true when it did.
fn prefill_step(role: &mut Role, task: &Task) -> std::result::Result<bool, ForwardError> {
    match (role, &task.work) {
        (Role::Drafter(drafter), Work::Draft { .. }) => {
            drafter.prefill_step(&task.context, &task.cancel)
        }
        (Role::Target(scorer), Work::Verify { drafts, .. }) => {
            let prefix = task.context.len().saturating_sub(*drafts);
            scorer.prefill_step(&task.context[..prefix], &task.cancel)
        }
        // A mismatched task fails in `run` with its message.
        _ => Ok(false),
    }
}

/// Runs one task on this worker's model.
pub fn run(role: &mut Role, task: &Task) -> std::result::Result<ReportKind, ForwardError> {
    match (role, &task.work) {
        (Role::Drafter(drafter), Work::Draft { count }) => drafter
            .draft(&task.context, *count, &task.decoding, &task.cancel)
            .map(ReportKind::Drafted),
        (
            Role::Target(scorer),
            Work::Verify {
                drafts,
                draft_probs,
            },
        ) => {
            let scores = scorer.score(&task.context, *drafts, &task.decoding, &task.cancel)?;
            let start = task.context.len() - drafts;
            scores
                .verdict(
                    &task.decoding.rule,
                    start,
                    &task.context[start..],
                    draft_probs.as_ref(),
                )
                .map(ReportKind::Verified)
                .map_err(|e| ForwardError::Failed(format!("verification failed: {e}")))
        }
        (Role::Drafter(_), Work::Verify { .. }) => Err(ForwardError::Failed(
            "a verification job was sent to the drafter".into(),
        )),
        (Role::Target(_), Work::Draft { .. }) => Err(ForwardError::Failed(
            "a draft job was sent to a target worker".into(),
        )),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
