//! A pool of workers (one drafter, N target servers) and the requests it
//! serves, concurrently: each request runs its own state machine over the
//! shared workers, which keep a cache per request and take turns.

use crate::error::{Result, SchedError};
use crate::memory::{DeviceMemory, KvBudget, Need};
use crate::request::{Generation, Request, Update};
use crate::run::Run;
use crate::timeline::TimelineRecord;
use crate::tune::{self, ProfileSpec, Tuning};
use crate::worker::WorkerHandle;
use crate::workers::Workers;
use dsi_core::cancel::CancelFlag;
use dsi_core::schedule::{Mode, ModeSetting, Plan};
use dsi_core::tune::{CostProfile, Space};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// How long a job may run before its worker is considered hung.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// What the models of a pool accept, checked before a request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Vocabulary size shared by drafter and targets.
    pub vocab: usize,
    /// Positions every worker's cache holds.
    pub context: usize,
}

/// KV memory of one budgeted device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvUse {
    /// Budget and reservations.
    pub device: DeviceMemory,
    /// Bytes its workers' caches hold now.
    pub held: usize,
}

/// A drafter and a pool of target workers.
#[derive(Debug)]
pub struct Pool {
    workers: Workers,
    early_bonus: bool,
    limits: Option<Limits>,
    requests: AtomicU64,
    memory: Option<Arc<KvBudget>>,
    tuning: Option<Arc<Tuning>>,
}

impl Pool {
    /// A pool over `targets` (at least one) and an optional drafter.
    pub fn new(drafter: Option<WorkerHandle>, targets: Vec<WorkerHandle>) -> Result<Self> {
        if targets.is_empty() {
            return Err(SchedError::Unfit(
                "a pool needs at least one target worker".into(),
            ));
        }
        Ok(Self {
            workers: Workers {
                drafter,
                targets,
                job_timeout: DEFAULT_JOB_TIMEOUT,
                timeline: broadcast::channel(4096).0,
            },
            early_bonus: true,
            limits: None,
            requests: AtomicU64::new(0),
            memory: None,
            tuning: None,
        })
    }

    /// Bounds the KV caches on each device by a budget in bytes (devices
    /// named as their workers are). Requests reserve what their caches can
    /// reach before they start and wait their turn when it is not free; one
    /// that cannot fit alone is refused. Devices not named are unbounded.
    pub fn with_kv_budget(mut self, budgets: impl IntoIterator<Item = (String, usize)>) -> Self {
        self.memory = Some(Arc::new(KvBudget::new(budgets)));
        self
    }

    /// Budget, reservations and bytes held per budgeted device.
    pub fn kv_memory(&self) -> Vec<KvUse> {
        let Some(memory) = &self.memory else {
            return Vec::new();
        };
        memory
            .devices()
            .into_iter()
            .map(|device| KvUse {
                held: self
                    .workers
                    .drafter
                    .iter()
                    .chain(&self.workers.targets)
                    .filter(|w| w.device() == device.device)
                    .map(WorkerHandle::kv_bytes)
                    .sum(),
                device,
            })
            .collect()
    }

    /// Requests waiting for KV memory now, and that ever had to wait.
    pub fn kv_waiting(&self) -> (usize, u64) {
        self.memory
            .as_ref()
            .map_or((0, 0), |m| (m.waiting(), m.waited()))
    }

    /// Lets requests run `auto`: the pool chooses mode, lookahead and
    /// servers from `profile` (measured on these workers by
    /// [`Pool::measure_profile`], or a saved copy of one).
    pub fn with_profile(mut self, profile: CostProfile) -> Result<Self> {
        profile.validate(self.workers.targets.len())?;
        self.tuning = Some(Arc::new(Tuning::new(
            profile,
            self.workers.targets.len(),
            self.workers.drafter.is_some(),
        )));
        Ok(self)
    }

    /// Like [`Pool::with_profile`], with the policies' predictions already
    /// simulated (`Table::from_columns` over a saved copy).
    pub fn with_table(mut self, table: dsi_core::tune::Table) -> Result<Self> {
        table.profile().validate(self.workers.targets.len())?;
        self.tuning = Some(Arc::new(Tuning::from_table(table)));
        Ok(self)
    }

    /// Measures what this pool's jobs cost (see [`CostProfile`]) by running
    /// jobs on its workers; call it before serving, as it times jobs alone
    /// and side by side. Takes about `rows * repeats` target jobs plus as
    /// many again per target server.
    pub async fn measure_profile(&self, spec: &ProfileSpec) -> Result<CostProfile> {
        if let Some(limits) = self.limits
            && let Some(&token) = spec.context.iter().find(|&&t| t as usize >= limits.vocab)
        {
            return Err(SchedError::Unfit(format!(
                "profile context token id {token} is outside the vocabulary (size {})",
                limits.vocab
            )));
        }
        let id = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        tune::measure(&self.workers, id, spec).await
    }

    /// The pool's tuning, when it has a profile.
    pub fn tuning(&self) -> Option<&Arc<Tuning>> {
        self.tuning.as_ref()
    }

    /// Checks requests against the models' vocabulary and context.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Sets how long a job may run before its worker is retired as hung.
    pub fn with_job_timeout(mut self, timeout: Duration) -> Self {
        self.workers.job_timeout = timeout;
        self
    }

    /// The drafter and the target workers, to build another pool over
    /// (some of) the same workers.
    pub fn workers(&self) -> (Option<&WorkerHandle>, &[WorkerHandle]) {
        (self.workers.drafter.as_ref(), &self.workers.targets)
    }

    /// Whether a bonus token that disagrees with the next draft ends the
    /// epoch at once (default) or, as in the paper's simulator, only when
    /// the job verifying that draft finishes. See `Plan::early_bonus`.
    pub fn with_early_bonus(mut self, early_bonus: bool) -> Self {
        self.early_bonus = early_bonus;
        self
    }

    /// Number of target workers.
    pub fn targets(&self) -> usize {
        self.workers.targets.len()
    }

    /// True when the pool has a drafter.
    pub fn has_drafter(&self) -> bool {
        self.workers.drafter.is_some()
    }

    /// A live feed of every request's timeline; a slow receiver misses
    /// entries rather than slowing the scheduler.
    pub fn subscribe(&self) -> broadcast::Receiver<TimelineRecord> {
        self.workers.timeline.subscribe()
    }

    /// Runs `request` to the end, reporting verified tokens and timeline
    /// entries to `sink` as they happen.
    ///
    /// Requests run concurrently over the shared workers. Dropping the
    /// returned future cancels the request: every job it started is
    /// cancelled.
    pub async fn generate(
        &self,
        request: Request,
        sink: impl FnMut(Update<'_>) + Send,
    ) -> Result<Generation> {
        self.generate_until(request, &CancelFlag::new(), sink).await
    }

    /// Like [`generate`](Self::generate), but raising `stop` (from the sink,
    /// when a stop string appears, say) ends the request at once as
    /// [`StopReason::Cancelled`], with the tokens and stats so far.
    pub async fn generate_until(
        &self,
        request: Request,
        stop: &CancelFlag,
        sink: impl FnMut(Update<'_>) + Send,
    ) -> Result<Generation> {
        self.check(&request)?;
        let id = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let servers = request.targets.unwrap_or(self.workers.targets.len());
        let placement = self.place(id, servers);
        let reservation = match &self.memory {
            Some(memory) => {
                let need = self.need(&request, &placement);
                memory.check(&need, &describe(&request))?;
                Some(memory.reserve(need).await)
            }
            None => None,
        };
        let (mode, k) = match request.mode {
            ModeSetting::Fixed(mode) => (mode, request.k),
            // The driver retunes before the first job; these only size it.
            ModeSetting::Auto => (Mode::Dsi, Space::DEFAULT_MAX_K),
        };
        let plan = Plan {
            mode,
            k,
            servers,
            max_new_tokens: request.max_new_tokens,
            eos: request.eos,
            decoding: request.decoding,
            early_bonus: self.early_bonus,
        };
        Run::new(
            &self.workers,
            id,
            plan,
            request.prompt,
            placement,
            reservation,
            sink,
        )?
        .with_tuning(self.tuning.clone(), request.mode == ModeSetting::Auto)
        .finish(stop)
        .await
    }

    /// The pool targets a request uses, in the order its machine numbers
    /// them: least loaded first, ties rotated by request so concurrent
    /// requests start on different workers (SI and non-SI use the first).
    fn place(&self, request: u64, servers: usize) -> Vec<usize> {
        let n = self.workers.targets.len();
        // Request ids start at 1: the first request starts on target 0.
        let turn = (request.saturating_sub(1) % n.max(1) as u64) as usize;
        let mut order: Vec<usize> = (0..n).map(|i| (i + turn) % n).collect();
        order.sort_by_key(|&i| self.workers.targets[i].load().load(Ordering::Relaxed));
        order.truncate(servers.min(n));
        order
    }

    /// Refuses a request whose KV caches could not fit in the budget even
    /// with nothing else running (it would wait forever), naming the numbers.
    pub fn check_memory(&self, request: &Request) -> Result<()> {
        let Some(memory) = &self.memory else {
            return Ok(());
        };
        let servers = request.targets.unwrap_or(self.workers.targets.len());
        let need = self.need(request, &self.place(0, servers));
        memory.check(&need, &describe(request))
    }

    /// Bytes the request's caches can reach on each device: for every
    /// worker it may use, its prompt, its new tokens and one lookahead.
    fn need(&self, request: &Request, placement: &[usize]) -> Need {
        let k = match request.mode {
            ModeSetting::Auto => Space::DEFAULT_MAX_K,
            ModeSetting::Fixed(_) => request.k,
        };
        let positions = request.prompt.len() + request.max_new_tokens + k + 1;
        let targets = match request.mode {
            ModeSetting::Auto | ModeSetting::Fixed(Mode::Dsi) => placement,
            ModeSetting::Fixed(Mode::Si | Mode::NonSi) => &placement[..placement.len().min(1)],
        };
        let drafter = self
            .workers
            .drafter
            .iter()
            .filter(|_| request.mode.drafts());
        let mut need: Need = Vec::new();
        for worker in drafter.chain(targets.iter().map(|&i| &self.workers.targets[i])) {
            let Some(footprint) = worker.footprint() else {
                continue;
            };
            let bytes = footprint.bytes_for(positions);
            match need.iter_mut().find(|(d, _)| d == worker.device()) {
                Some((_, total)) => *total += bytes,
                None => need.push((worker.device().to_string(), bytes)),
            }
        }
        need
    }

    fn check(&self, request: &Request) -> Result<()> {
        if request.mode == ModeSetting::Auto && self.tuning.is_none() {
            return Err(SchedError::Unfit(
                "mode auto needs the pool's cost profile (Pool::measure_profile, then \
                 Pool::with_profile); or ask for dsi, si or nonsi"
                    .into(),
            ));
        }
        if let ModeSetting::Fixed(mode) = request.mode
            && mode.drafts()
            && self.workers.drafter.is_none()
        {
            return Err(SchedError::Unfit(format!(
                "{mode} needs a drafter, but this pool has none: add one or use nonsi",
            )));
        }
        if let Some(n) = request.targets
            && (n == 0 || n > self.workers.targets.len())
        {
            return Err(SchedError::Unfit(format!(
                "the request asks for {n} target servers; this pool has {}: ask for 1 to {0}",
                self.workers.targets.len()
            )));
        }
        let Some(limits) = self.limits else {
            return Ok(());
        };
        if let Some(&token) = request.prompt.iter().find(|&&t| t as usize >= limits.vocab) {
            return Err(SchedError::Unfit(format!(
                "prompt token id {token} is outside the vocabulary (size {})",
                limits.vocab
            )));
        }
        let needed = request.prompt.len() + request.max_new_tokens;
        if needed > limits.context {
            return Err(SchedError::Unfit(format!(
                "the prompt ({} tokens) plus max_tokens ({}) exceeds the context of {} positions: shorten one",
                request.prompt.len(),
                request.max_new_tokens,
                limits.context
            )));
        }
        Ok(())
    }
}

/// A request's size, as memory errors name it.
fn describe(request: &Request) -> String {
    format!(
        "a prompt of {} tokens plus max_tokens {}",
        request.prompt.len(),
        request.max_new_tokens
    )
}
