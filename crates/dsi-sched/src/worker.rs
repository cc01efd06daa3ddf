//! Worker threads: each owns one model (and the KV caches of the requests
//! it serves) and runs its tasks on its own OS thread, never on the
//! runtime's.
//!
//! Tasks arrive on a channel and reports go back on the channel each task
//! names, so one worker serves many requests at once: it keeps a KV cache
//! per request and runs the ready tasks of several requests in one batched
//! forward ([`crate::batch`]), each request's tasks in order. Running them
//! in order is what lets the scheduler treat a cancelled job's worker as
//! free at once: the cancelled job ends at its next safe point before that
//! request's next task begins. A task whose flag is already raised is
//! skipped.

use crate::batch::{Aside, DEFAULT_MAX_BATCH_TOKENS, Role, take_batch};
use crate::error::{Result, SchedError};
use crate::fair::FairQueue;
use crate::forwards::{ForwardLog, ForwardStats};
use crate::memory::Reservation;
use crate::roles::JobStep;
use crate::task::{Message, Report, ReportKind, Task};
use dsi_core::cache_layout::CacheFootprint;
use dsi_core::model::ForwardError;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

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
    /// Its model's forwards, when it records them.
    forwards: Option<ForwardLog>,
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
        self.mark_at(Instant::now());
    }

    fn mark_at(&self, at: Instant) {
        let micros = at.saturating_duration_since(self.since).as_micros() as u64;
        self.micros.fetch_max(micros, Ordering::Relaxed);
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
        Self::spawn_batching(name, role, DEFAULT_MAX_BATCH_TOKENS)
    }

    /// Like [`spawn`](Self::spawn), feeding at most `max_batch_tokens`
    /// tokens per batched forward unless one task needs more (1: one task
    /// per forward, batching off).
    pub fn spawn_batching(
        name: impl Into<String>,
        role: Role,
        max_batch_tokens: usize,
    ) -> Result<Self> {
        let name = name.into();
        let (tasks, inbox) = unbounded_channel();
        let footprint = role.cache().footprint();
        let forwards = role.cache().forward_log();
        let kv_bytes = Arc::new(AtomicUsize::new(0));
        let progress = Arc::new(Progress::new());
        let marks = Marks {
            kv_bytes: Arc::clone(&kv_bytes),
            progress: Arc::clone(&progress),
        };
        std::thread::Builder::new()
            .name(format!("dsi-worker {name}"))
            .spawn(move || serve(role, inbox, &marks, max_batch_tokens))
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
            forwards,
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
            forwards: None,
        }
    }

    /// A handle over a task channel that a proxy serves for a worker in
    /// another process: its caches grow as `footprint` says, and the proxy
    /// publishes what the worker holds and when it last moved through the
    /// returned [`RemoteMarks`].
    pub fn remote(
        name: impl Into<String>,
        tasks: UnboundedSender<Message>,
        footprint: Option<CacheFootprint>,
    ) -> (Self, RemoteMarks) {
        let marks = RemoteMarks {
            kv_bytes: Arc::default(),
            progress: Arc::new(Progress::new()),
        };
        let handle = Self {
            footprint,
            kv_bytes: Arc::clone(&marks.kv_bytes),
            progress: Some(Arc::clone(&marks.progress)),
            ..Self::from_channel(name, tasks)
        };
        (handle, marks)
    }

    /// When the worker last moved (took up a message or finished a batch),
    /// if anyone tells.
    pub fn last_progress(&self) -> Option<Instant> {
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

    /// Its forwards so far: sequences and rows per forward, time per
    /// forward (`None` when its model does not record them).
    pub fn forwards(&self) -> Option<ForwardStats> {
        self.forwards.as_ref().map(ForwardLog::snapshot)
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
    pub fn send(&self, task: Task) -> bool {
        self.tasks.send(Message::Run(task)).is_ok()
    }

    /// Tells the worker that `request` ended, so its KV cache can go; the
    /// worker drops `reservation` after freeing it.
    pub fn release(&self, request: u64, reservation: Option<Reservation>) {
        // A worker that is gone holds no cache.
        let _ = self.tasks.send(Message::Release(request, reservation));
    }
}

/// What a proxy for a worker in another process publishes about it, as a
/// worker thread does about itself.
#[derive(Debug, Clone)]
pub struct RemoteMarks {
    kv_bytes: Arc<AtomicUsize>,
    progress: Arc<Progress>,
}

impl RemoteMarks {
    /// The bytes the worker's caches hold now.
    pub fn set_kv_bytes(&self, bytes: usize) {
        self.kv_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The worker moved at `at` (on this machine's clock); earlier marks
    /// than the last are ignored.
    pub fn moved_at(&self, at: Instant) {
        self.progress.mark_at(at);
    }
}

/// What a worker thread publishes about itself.
struct Marks {
    kv_bytes: Arc<AtomicUsize>,
    progress: Arc<Progress>,
}

/// A worker thread's loop: until every handle is dropped and every queued
/// task is done.
fn serve(
    mut role: Role,
    mut inbox: UnboundedReceiver<Message>,
    marks: &Marks,
    max_batch_tokens: usize,
) {
    let mut queue = FairQueue::default();
    // Jobs (by request: job ids are per request) reported started and not
    // finished: those whose prefill is under way in chunks, between batches.
    let mut started = HashSet::new();
    loop {
        marks
            .kv_bytes
            .store(role.cache().cache_bytes(), Ordering::Relaxed);
        marks.progress.mark();
        while let Ok(message) = inbox.try_recv() {
            queue.push(message.request(), message);
        }
        if queue.is_empty() {
            match inbox.blocking_recv() {
                Some(message) => queue.push(message.request(), message),
                None => return,
            }
            continue;
        }
        let (batch, aside) = take_batch(&mut queue, max_batch_tokens, |task| role.next_feed(task));
        for aside in aside {
            match aside {
                Aside::Cancelled(task) => {
                    let ran = started.remove(&(task.request, task.job));
                    report(&task, ReportKind::Cancelled { ran });
                }
                // A release queues behind its request's tasks, so it comes
                // last; the reservation goes once the cache is freed.
                Aside::Release(request, reservation) => {
                    role.cache_mut().release(request);
                    drop(reservation);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        marks.progress.mark();
        for task in &batch {
            if started.insert((task.request, task.job)) {
                report(task, ReportKind::Started);
            }
        }
        let results = run_guarded(&mut role, &batch);
        for (task, result) in batch.iter().zip(results) {
            let kind = match result {
                // A long prefill runs a chunk at a time; other requests'
                // tasks go between its chunks.
                Ok(JobStep::Prefilled) => continue,
                Ok(JobStep::Done(kind)) => kind,
                Err(ForwardError::Cancelled) => ReportKind::Cancelled { ran: true },
                Err(ForwardError::Failed(message)) => ReportKind::Failed(message),
            };
            started.remove(&(task.request, task.job));
            report(task, kind);
        }
        for task in batch {
            if started.contains(&(task.request, task.job)) {
                queue.push_front(task.request, Message::Run(task));
            }
        }
    }
}

/// Tells the task's driver what happened (the request may have ended:
/// nobody to tell then).
fn report(task: &Task, kind: ReportKind) {
    let _ = task.reply.send(Report {
        job: task.job,
        at: Instant::now(),
        kind,
    });
}

/// Runs a batch, turning a panic into a failure of every task in it (and
/// resetting the caches, whose state is then unknown).
fn run_guarded(role: &mut Role, batch: &[Task]) -> Vec<crate::batch::TaskResult> {
    match catch_unwind(AssertUnwindSafe(|| role.run(batch))) {
        Ok(results) => results,
        Err(panic) => {
            role.cache_mut().reset();
            let message = format!("the worker panicked: {}", panic_message(&panic));
            batch
                .iter()
                .map(|_| Err(ForwardError::Failed(message.clone())))
                .collect()
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::{CacheState, Job, JobResults, Scored, Scorer, Scores};
    use crate::task::Work;
    use dsi_core::cancel::CancelFlag;
    use dsi_core::sampling::Decoding;
    use dsi_core::schedule::JobId;
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, channel};

    /// A scorer that records the requests of every call and holds its
    /// first call until told to go, so tasks pile up behind it.
    struct Recording {
        calls: Arc<Mutex<Vec<Vec<u64>>>>,
        gate: Option<Receiver<()>>,
    }

    impl CacheState for Recording {}

    impl Scorer for Recording {
        fn score(&mut self, jobs: &[Job<'_>]) -> JobResults<Scored> {
            if let Some(gate) = self.gate.take() {
                gate.recv().expect("the test lets the first call go");
            }
            let requests = jobs.iter().map(|j| j.request).collect();
            self.calls.lock().expect("calls").push(requests);
            jobs.iter()
                .map(|j| Ok(JobStep::Done(Scores::Choices(vec![0; j.count + 1]).into())))
                .collect()
        }
    }

    fn verify(request: u64, job: u64, reply: &UnboundedSender<Report>) -> Task {
        Task {
            request,
            job: JobId(job),
            context: vec![0],
            work: Work::Verify {
                drafts: 0,
                draft_probs: None,
            },
            decoding: Decoding::greedy(),
            cancel: CancelFlag::new(),
            reply: reply.clone(),
        }
    }

    #[test]
    fn tasks_waiting_behind_a_forward_run_together_in_the_next() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (go, gate) = channel();
        let role = Role::Target(Box::new(Recording {
            calls: Arc::clone(&calls),
            gate: Some(gate),
        }));
        let worker = WorkerHandle::spawn("recording", role).expect("worker");
        let (reply, mut reports) = unbounded_channel();
        assert!(worker.send(verify(1, 0, &reply)));
        // The first forward is under way (it reported started) and waits.
        let first = reports.blocking_recv().expect("a report");
        assert!(matches!(first.kind, ReportKind::Started));
        let cancelled = verify(2, 0, &reply);
        cancelled.cancel.cancel();
        for task in [
            verify(1, 1, &reply),
            cancelled,
            verify(2, 1, &reply),
            verify(3, 0, &reply),
        ] {
            assert!(worker.send(task));
        }
        go.send(()).expect("the worker waits");
        drop(worker);
        let mut kinds = Vec::new();
        while let Some(report) = reports.blocking_recv() {
            kinds.push(report.kind);
            if kinds.len() == 8 {
                break;
            }
        }
        assert_eq!(
            *calls.lock().expect("calls"),
            [vec![1], vec![3, 1, 2]],
            "one task per request, in turn from the request after the last served; request 2's cancelled head skipped, its next task taken when its turn came again"
        );
        let cancelled = kinds
            .iter()
            .filter(|k| matches!(k, ReportKind::Cancelled { ran: false }))
            .count();
        assert_eq!(cancelled, 1);
    }
}
