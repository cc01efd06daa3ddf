//! Flags that describe a scheduler pool (drafter, target servers, devices,
//! latency emulation) and the code that loads it.
//!
//! Each distinct device gets the weights once; every worker on it gets its
//! own session (KV cache) over those shared weights.

use crate::bundled;
use crate::exit::UsageError;
use crate::model_args::{advance, load_bar, parse_device, parse_dtype};
use crate::placement::{Placement, parse_placement};
use crate::remote_workers::RemoteWorkers;
use anyhow::Context;
use clap::Args;
use dsi_core::model::KvModel;
use dsi_core::schedule::{Mode, ModeSetting};
use dsi_core::tune::Table;
use dsi_models::Session;
use dsi_models::checkpoint::{Checkpoint, GenerationDefaults, TextTokenizer};
use dsi_models::device::{Backend, DeviceSpec, OnBackend, RunDtype, dispatch};
use dsi_models::pair::{PairSide, pool_vocab};
use dsi_models::transformer::{LinearWeights, LoadedModel, Numerics, Precision};
use dsi_sched::tune::{ProfileSpec, Tuning};
use dsi_sched::{CachedModel, Emulated, Latency, Limits, Pool, Role, WorkerHandle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the target and drafter are, where they run, and how DSI uses them.
#[derive(Debug, Clone, Args)]
pub(crate) struct PoolArgs {
    /// Target model: a Hugging Face checkpoint folder or a GGUF file
    /// (default: the bundled target).
    #[arg(long, value_name = "DIR_OR_GGUF")]
    pub(crate) model: Option<PathBuf>,
    /// Drafter model (same tokenizer as the target; a folder or a GGUF
    /// file); needed by dsi and si (default: the bundled drafter, when
    /// --model is not given either).
    #[arg(long, value_name = "DIR_OR_GGUF")]
    pub(crate) drafter: Option<PathBuf>,
    /// Algorithm: auto, dsi, si or nonsi (default: auto with a drafter, else
    /// nonsi). `auto` chooses the algorithm, lookahead and target servers
    /// from the pool's measured costs and the acceptance it observes, and
    /// revises its choice between epochs.
    #[arg(long, value_parser = parse_mode)]
    pub(crate) mode: Option<ModeSetting>,
    /// Drafts per verification job (the lookahead) of dsi and si; auto
    /// chooses its own.
    #[arg(long, default_value_t = 5)]
    pub(crate) k: usize,
    /// Measure the pool's costs again (for auto) instead of reusing the
    /// profile saved for these models, devices and settings.
    #[arg(long)]
    pub(crate) reprofile: bool,
    /// Target servers (the speculation-parallelism degree), all on --backend.
    #[arg(long, default_value_t = 2, conflicts_with = "target_devices")]
    pub(crate) targets: usize,
    /// One target server per entry, e.g. `cpu,cpu,wgpu:0`, or
    /// `grpc://HOST:PORT` for a `dsi worker` in another process (overrides
    /// --targets). SI and non-SI run on one, the next taking over when it
    /// fails.
    #[arg(long, value_delimiter = ',', value_parser = parse_placement, value_name = "LIST")]
    pub(crate) target_devices: Vec<Placement>,
    /// Device of the drafter (default: --backend), or `grpc://HOST:PORT`
    /// for a `dsi worker --role drafter`.
    #[arg(long, value_parser = parse_placement, value_name = "DEVICE")]
    pub(crate) drafter_device: Option<Placement>,
    /// The shared secret of the remote workers (their --auth-token-file).
    #[arg(long, value_name = "FILE")]
    pub(crate) worker_token_file: Option<PathBuf>,
    /// PEM certificate of the authority that signed the grpcs:// workers'
    /// certificates.
    #[arg(long, value_name = "FILE")]
    pub(crate) worker_tls_ca: Option<PathBuf>,
    /// Default device: cpu, ndarray, wgpu, wgpu:N, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub(crate) backend: DeviceSpec,
    /// Run dtype: f32, f16, bf16, or q8 (8-bit projection weights, cpu only); default per device: bf16 on CUDA, f16 on wgpu when supported, else f32. On the cpu, f16/bf16/q8 store the projections so and compute in f32; a GGUF file's block-quantized weights (Q4_K ...) stay as stored whatever the dtype, elsewhere they are dequantized to it at load.
    #[arg(long, value_parser = parse_dtype)]
    pub(crate) dtype: Option<RunDtype>,
    /// Pad every target forward to TTFT,TPOT milliseconds (stand in for a
    /// larger target); a third value adds milliseconds per row a batched
    /// forward feeds beyond its first (the compute-bound regime).
    #[arg(long, value_name = "TTFT,TPOT[,PER_ROW]")]
    pub(crate) emulate_target_ms: Option<Latency>,
    /// Pad every drafter forward to TTFT,TPOT[,PER_ROW] milliseconds.
    #[arg(long, value_name = "TTFT,TPOT[,PER_ROW]")]
    pub(crate) emulate_drafter_ms: Option<Latency>,
    /// A job running longer than this retires its worker as hung.
    #[arg(long, default_value_t = 120_000)]
    pub(crate) job_timeout_ms: u64,
    /// KV-cache memory of all requests on one device together, in MiB
    /// (default: half the available memory on the CPU, 4096 on a GPU).
    /// Requests wait for room; one that cannot fit alone is refused.
    #[arg(long, value_name = "MIB")]
    pub(crate) kv_cache_mib: Option<usize>,
    /// Longest forward that fills a cache, in tokens: a longer prompt is fed
    /// in chunks, with other requests' jobs between them.
    #[arg(long, default_value_t = dsi_sched::cached::DEFAULT_PREFILL_CHUNK)]
    pub(crate) prefill_chunk: usize,
    /// Tokens one batched forward feeds at most: each worker runs the ready
    /// jobs of several requests (one each) in one forward up to this many
    /// tokens (a prefill chunk counts its chunk). 1 turns batching off.
    #[arg(long, default_value_t = dsi_sched::batch::DEFAULT_MAX_BATCH_TOKENS)]
    pub(crate) max_batch_tokens: usize,
    /// Allow target servers that compute different functions (different
    /// dtypes or backends). Outputs then follow the target's distribution
    /// but are no longer token-identical to non-SI.
    #[arg(long)]
    pub(crate) allow_mixed_targets: bool,
    /// `invariant`: a position's logits do not depend on what shares its
    /// forward (fixed-order kernels on the cpu backend), so greedy DSI, SI
    /// and non-SI emit identical tokens under any load. `fast`: the
    /// backend's own kernels; only the target's distribution is kept.
    #[arg(long, default_value = "invariant")]
    pub(crate) numerics: Numerics,
}

/// clap parser for `--mode`.
pub(crate) fn parse_mode(s: &str) -> Result<ModeSetting, String> {
    s.parse().map_err(|e: dsi_core::Error| e.to_string())
}

/// A loaded pool and what the caller needs to use it. The target's weight
/// files are unmapped once the workers hold their tensors, so their pages
/// do not stay resident beside the loaded copy.
pub(crate) struct LoadedPool {
    pub(crate) pool: Pool,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) generation: GenerationDefaults,
    /// Token ids the pool samples from: the target's rows, or the rows it
    /// shares with a drafter padded to another size (`dsi_models::pair`).
    pub(crate) vocab: usize,
    pub(crate) mode: ModeSetting,
    /// Where the cost profile came from, for reports (None without one).
    pub(crate) profile: Option<String>,
    /// The file the profile is saved in, if any.
    pub(crate) profile_file: Option<PathBuf>,
    /// Devices and dtypes, for reports: `cpu f32 x2; drafter cpu f32`.
    pub(crate) placement: String,
    /// KV budget per device, for reports: `cpu 11.2 GiB (half the available memory)`.
    pub(crate) kv_budget: String,
}

impl PoolArgs {
    /// Every flag at its default, for commands that build pools themselves.
    pub(crate) fn defaults() -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            pool: PoolArgs,
        }
        Ok(<Defaults as clap::Parser>::try_parse_from(["dsi"])?.pool)
    }

    /// The target's folder: `--model`, or the bundled target.
    pub(crate) fn target_dir(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(bundled::target)
    }

    /// The drafter's folder: `--drafter`, or the bundled drafter when no
    /// model was named at all.
    pub(crate) fn drafter_dir(&self) -> Option<PathBuf> {
        match (&self.drafter, &self.model) {
            (Some(dir), _) => Some(dir.clone()),
            (None, None) => Some(bundled::drafter()),
            (None, Some(_)) => None,
        }
    }

    /// The mode asked for, or the default for the models given.
    pub(crate) fn mode(&self) -> anyhow::Result<ModeSetting> {
        let drafter = self.drafter_dir();
        let mode = self.mode.unwrap_or(if drafter.is_some() {
            ModeSetting::Auto
        } else {
            ModeSetting::Fixed(Mode::NonSi)
        });
        if mode == ModeSetting::Auto && drafter.is_none() {
            // Nothing to choose between: auto without a drafter is non-SI.
            return Ok(ModeSetting::Fixed(Mode::NonSi));
        }
        if mode.drafts() && drafter.is_none() {
            return Err(UsageError(format!(
                "--mode {mode} needs a drafter: pass --drafter DIR, or use --mode nonsi"
            ))
            .into());
        }
        if matches!(mode, ModeSetting::Fixed(m) if m.drafts()) && self.k == 0 {
            return Err(UsageError("invalid k: 0 (expected at least 1)".into()).into());
        }
        Ok(mode)
    }

    fn target_placements(&self, mode: ModeSetting) -> anyhow::Result<Vec<Placement>> {
        if !self.target_devices.is_empty() {
            // Every named device, whatever the mode: SI and non-SI run on
            // one at a time, and the next takes over when it fails or hangs.
            return Ok(self.target_devices.clone());
        }
        if self.targets == 0 {
            return Err(UsageError("invalid targets: 0 (expected at least 1)".into()).into());
        }
        // SI and non-SI use one server at a time; more copies on the same
        // device would only hold memory.
        let servers = match mode {
            ModeSetting::Auto | ModeSetting::Fixed(Mode::Dsi) => self.targets,
            ModeSetting::Fixed(Mode::Si | Mode::NonSi) => 1,
        };
        Ok(vec![Placement::Local(self.backend); servers])
    }

    /// Opens the target's checkpoint (config, tokenizer, weights).
    pub(crate) fn open_target(&self) -> anyhow::Result<Checkpoint> {
        let dir = self.target_dir();
        Checkpoint::open(&dir).with_context(|| format!("loading the target in {}", dir.display()))
    }

    /// Loads the weights once per device and starts one worker thread per
    /// server; every cache holds up to `capacity` positions (at most the
    /// context), allocated as they arrive.
    pub(crate) fn load(&self, target: Checkpoint, capacity: usize) -> anyhow::Result<LoadedPool> {
        self.load_with(target, capacity, false)
    }

    /// Like [`load`](Self::load); `serving` starts every worker of every
    /// mode, each keeping one cache per concurrent request. Either way the
    /// caches of each device share one budget (`--kv-cache-mib`).
    pub(crate) fn load_with(
        &self,
        target: Checkpoint,
        capacity: usize,
        serving: bool,
    ) -> anyhow::Result<LoadedPool> {
        let mode = self.mode()?;
        // Room for the profile's measurements (a ceiling: caches grow as
        // positions arrive, and requests reserve only what they need).
        let capacity = if mode == ModeSetting::Auto || serving {
            capacity.max(CALIBRATION_ROOM)
        } else {
            capacity
        };
        let capacity = capacity.min(target.config.max_context);
        let placements = self.target_placements(if serving { ModeSetting::Auto } else { mode })?;
        let local = |p: &Placement| match p {
            Placement::Local(device) => Some(*device),
            Placement::Remote(_) => None,
        };
        let drafter_placement = self
            .drafter_device
            .clone()
            .unwrap_or(Placement::Local(self.backend));
        // A local drafter is opened before the targets load: the ids the
        // pool samples from decide the logits every session hands out.
        let drafter_checkpoint = match (
            self.drafter_dir(),
            mode.drafts() || serving,
            &drafter_placement,
        ) {
            (Some(dir), true, Placement::Local(_)) => Some(
                Checkpoint::open(&dir)
                    .with_context(|| format!("loading the drafter in {}", dir.display()))?,
            ),
            _ => None,
        };
        let vocab = pool_vocab(
            PairSide::from(&target),
            drafter_checkpoint.as_ref().map(PairSide::from),
        )
        .map_err(|e| UsageError(e.to_string()))?;
        let mut remotes = RemoteWorkers::new(
            self.worker_token_file.as_deref(),
            self.worker_tls_ca.as_deref(),
            self.target_dir(),
            vocab,
            placements.iter().any(|p| local(p).is_some()),
        )?;
        let mut placement = Vec::new();
        // Local sessions: the weights once per distinct device.
        let mut distinct: Vec<DeviceSpec> = Vec::new();
        for device in placements.iter().filter_map(local) {
            if !distinct.contains(&device) {
                distinct.push(device);
            }
        }
        let mut sessions = Vec::new();
        // What each target computes, for the one-function check.
        let mut functions = Vec::new();
        // Every device of this process that holds a worker.
        let mut local_devices = distinct.clone();
        for device in distinct {
            let count = placements
                .iter()
                .filter(|p| local(p) == Some(device))
                .count();
            let loaded = dispatch(
                device,
                LoadSessions {
                    checkpoint: &target,
                    what: "target",
                    dtype: self.dtype,
                    count,
                    vocab,
                    capacity,
                    latency: self.emulate_target_ms,
                    numerics: self.numerics,
                    threads: None,
                },
            )??;
            placement.push(format!("target {device} {} x{count}", loaded.dtype));
            let function = dsi_remote::target_function(
                &device.to_string(),
                &loaded.dtype,
                &self.numerics.to_string(),
            );
            functions.push((device.to_string(), function));
            sessions.push((device, loaded.sessions.into_iter().enumerate()));
        }
        let mut targets = Vec::with_capacity(placements.len());
        let mut remote_budgets = Vec::new();
        let mut context = capacity;
        for spot in &placements {
            match spot {
                Placement::Local(device) => {
                    let (i, session) = sessions
                        .iter_mut()
                        .find(|(d, _)| d == device)
                        .and_then(|(_, s)| s.next())
                        .context("a target session per local device entry")?;
                    targets.push(
                        WorkerHandle::spawn_batching(
                            format!("{device}#{i}"),
                            Role::Target(Box::new(
                                CachedModel::new(session).with_prefill_chunk(self.prefill_chunk),
                            )),
                            self.max_batch_tokens,
                        )?
                        .on_device(device.to_string()),
                    );
                }
                Placement::Remote(url) => {
                    let worker = remotes.target(url)?;
                    let info = &worker.info;
                    context = context.min(info.context);
                    placement.push(format!("target {url} ({} {})", info.device, info.dtype));
                    functions.push((url.clone(), info.function()));
                    remote_budgets.push((url.clone(), info.kv_budget_bytes));
                    targets.push(worker.handle);
                }
            }
        }
        self.check_one_target_function(&functions)?;
        let drafter = match (
            self.drafter_dir(),
            mode.drafts() || serving,
            drafter_placement,
        ) {
            (Some(_), true, Placement::Remote(url)) => {
                let worker = remotes.drafter(&url)?;
                let info = &worker.info;
                context = context.min(info.context);
                placement.push(format!("drafter {url} ({} {})", info.device, info.dtype));
                remote_budgets.push((url, info.kv_budget_bytes));
                Some(worker.handle)
            }
            (Some(_), true, Placement::Local(device)) => {
                let checkpoint = drafter_checkpoint
                    .as_ref()
                    .context("the drafter's checkpoint was opened")?;
                let loaded = dispatch(
                    device,
                    LoadSessions {
                        checkpoint,
                        what: "drafter",
                        dtype: self.dtype,
                        count: 1,
                        vocab,
                        capacity: capacity.min(checkpoint.config.max_context),
                        latency: self.emulate_drafter_ms,
                        numerics: self.numerics,
                        threads: None,
                    },
                )??;
                placement.push(format!("drafter {device} {}", loaded.dtype));
                let session = loaded
                    .sessions
                    .into_iter()
                    .next()
                    .context("no drafter session")?;
                if !local_devices.contains(&device) {
                    local_devices.push(device);
                }
                Some(
                    WorkerHandle::spawn_batching(
                        format!("{device} drafter"),
                        Role::Drafter(Box::new(
                            CachedModel::new(session).with_prefill_chunk(self.prefill_chunk),
                        )),
                        self.max_batch_tokens,
                    )?
                    .on_device(device.to_string()),
                )
            }
            _ => None,
        };
        let capacity = context;
        let (budgets, kv_budget) = self.kv_budgets(&local_devices, remote_budgets)?;
        let mut pool = Pool::new(drafter, targets)?
            .with_limits(Limits {
                vocab,
                context: capacity,
            })
            .with_job_timeout(Duration::from_millis(self.job_timeout_ms.max(1)))
            .with_kv_budget(budgets);
        let (mut profile, mut profile_file) = (None, None);
        if mode == ModeSetting::Auto || serving {
            let context = calibration_tokens(&target, capacity)?;
            let (table, source, file) = self.profile(&pool, context, &placement)?;
            pool = pool.with_table(table)?;
            profile = Some(source);
            profile_file = file;
        }
        let Checkpoint {
            tokenizer,
            generation,
            ..
        } = target;
        Ok(LoadedPool {
            pool,
            tokenizer,
            generation,
            vocab,
            mode,
            profile,
            profile_file,
            placement: placement.join("; "),
            kv_budget,
        })
    }

    /// The pool's cost profile and `auto`'s predictions from it: the ones
    /// saved for this pool (see `profile_cache`), or measured on its
    /// workers and simulated now, and saved. Returns them and a few words
    /// on where they came from.
    fn profile(
        &self,
        pool: &Pool,
        context: Vec<dsi_core::TokenId>,
        placement: &[String],
    ) -> anyhow::Result<(Table, String, Option<PathBuf>)> {
        let space = Tuning::space(pool.targets(), pool.has_drafter());
        let mut models = vec![self.target_dir()];
        models.extend(self.drafter_dir());
        let models: Vec<&std::path::Path> = models.iter().map(PathBuf::as_path).collect();
        let parts = vec![
            placement.join(", "),
            format!("numerics {:?}", self.numerics),
            format!(
                "emulate {:?} {:?}",
                self.emulate_target_ms, self.emulate_drafter_ms
            ),
            format!("batch {}", self.max_batch_tokens),
        ];
        let key = crate::profile_cache::key(&models, &parts)?;
        let dir = crate::profile_cache::dir();
        if !self.reprofile
            && let Some(dir) = &dir
            && let Some(saved) = crate::profile_cache::load(dir, &key)
            && saved.profile.validate(pool.targets()).is_ok()
            && let Some(table) = Table::from_columns(saved.profile, space, saved.columns)
        {
            let file = crate::profile_cache::file(dir, &key);
            return Ok((table, "saved profile".into(), Some(file)));
        }
        eprintln!("measuring this pool's costs for --mode auto (once; saved for later starts)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let profile = runtime
            .block_on(pool.measure_profile(&ProfileSpec::new(context)))
            .context("measuring the pool's costs")?;
        profile.validate(pool.targets())?;
        let table = Table::build(&profile, space);
        let source = match &dir {
            Some(dir) => match crate::profile_cache::save(dir, &key, &profile, table.columns()) {
                Ok(path) => format!("profile measured now, saved to {}", path.display()),
                Err(e) => format!("profile measured now, not saved: {e:#}"),
            },
            None => "profile measured now (no cache folder: set XDG_CACHE_HOME)".into(),
        };
        let file = dir.map(|dir| crate::profile_cache::file(&dir, &key));
        Ok((table, source, file))
    }

    /// All targets of a pool must compute one function, or greedy DSI would
    /// not emit non-SI's tokens: one backend kind, dtype and numerics.
    /// `functions` names each target's device or address and its function.
    fn check_one_target_function(&self, functions: &[(String, String)]) -> anyhow::Result<()> {
        let Some((_, first)) = functions.first() else {
            return Ok(());
        };
        if let Some((_, other)) = functions.iter().find(|(_, f)| f != first)
            && !self.allow_mixed_targets
        {
            return Err(UsageError(format!(
                "the target servers compute different functions ({first} and {other}), so greedy \
                 DSI would not reproduce non-SI's tokens: put every target on one kind of device, \
                 dtype and numerics, or pass --allow-mixed-targets to keep only the target's \
                 distribution"
            ))
            .into());
        }
        Ok(())
    }

    /// One budget per device of this process and per remote worker (named
    /// as their workers' `on_device`: a remote worker by its address, with
    /// the budget it stated), and a description for the start line.
    fn kv_budgets(
        &self,
        devices: &[DeviceSpec],
        remote: Vec<(String, usize)>,
    ) -> anyhow::Result<(Vec<(String, usize)>, String)> {
        let mut budgets = Vec::with_capacity(devices.len() + remote.len());
        let mut described = Vec::with_capacity(budgets.capacity());
        let local = devices.iter().map(|&device| {
            crate::kv_budget::for_device(self.kv_cache_mib, device)
                .map(|(bytes, why)| (device.to_string(), bytes, why))
        });
        let remote = remote
            .into_iter()
            .map(|(url, bytes)| Ok((url, bytes, "the worker's")));
        for entry in local.chain(remote) {
            let (name, bytes, why) = entry?;
            // A worker named twice is one worker with one budget.
            if budgets.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let size = if bytes < 1 << 30 {
                format!("{} MiB", bytes >> 20)
            } else {
                format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
            };
            described.push(format!("{name} {size} ({why})"));
            budgets.push((name, bytes));
        }
        Ok((budgets, described.join(", ")))
    }
}

/// Positions a cache needs for the profile: the calibration tokens (at most
/// about 64 with the bundled tokenizer; cut to fit) plus the widest
/// verification.
const CALIBRATION_ROOM: usize = 96;

/// The tokens every profile measurement runs after: a short piece of code
/// in the target's tokenizer, repeated to at least 32 tokens, at most
/// `CALIBRATION_ROOM - 16`.
fn calibration_tokens(
    target: &Checkpoint,
    capacity: usize,
) -> anyhow::Result<Vec<dsi_core::TokenId>> {
    const TEXT: &str = "def fibonacci(n):\n    if n < 2:\n        return n\n    \
                        return fibonacci(n - 1) + fibonacci(n - 2)\n\n\nclass Stack:\n    \
                        def __init__(self):\n        self.items = []\n";
    let mut tokens = target.tokenizer.encode(TEXT)?;
    if tokens.is_empty() {
        anyhow::bail!("the tokenizer encodes the calibration text as no tokens");
    }
    while tokens.len() < 32 {
        tokens.extend_from_within(..tokens.len().min(32 - tokens.len()));
    }
    let room = capacity.saturating_sub(dsi_core::tune::Space::DEFAULT_MAX_K + 2);
    tokens.truncate((CALIBRATION_ROOM - 16).min(room).max(2));
    Ok(tokens)
}

/// The run dtype as the start line says it, with a GGUF file's block
/// formats: kept as stored (the CPU kernels) or dequantized at load.
fn describe_dtype(dtype: RunDtype, precision: Precision, blocks: &[&str]) -> String {
    let name = format!("{dtype:?}").to_lowercase();
    match (blocks.is_empty(), precision.linear) {
        (true, _) => name,
        (false, LinearWeights::Host(_)) => format!("{name} + {} as stored", blocks.join("/")),
        (false, LinearWeights::Backend) => {
            format!("{name} ({} dequantized at load)", blocks.join("/"))
        }
    }
}

/// Sessions over one device's copy of the weights.
pub(crate) struct Loaded {
    pub(crate) sessions: Vec<Box<dyn KvModel>>,
    pub(crate) dtype: String,
}

pub(crate) struct LoadSessions<'a> {
    pub(crate) checkpoint: &'a Checkpoint,
    pub(crate) what: &'a str,
    pub(crate) dtype: Option<RunDtype>,
    pub(crate) count: usize,
    /// Logit columns each session hands out (see `dsi_models::pair`).
    pub(crate) vocab: usize,
    pub(crate) capacity: usize,
    pub(crate) latency: Option<Latency>,
    pub(crate) numerics: Numerics,
    /// Host threads per product (default: the device's).
    pub(crate) threads: Option<usize>,
}

impl OnBackend for LoadSessions<'_> {
    type Output = anyhow::Result<Loaded>;

    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> anyhow::Result<Loaded> {
        let dtype = self
            .dtype
            .unwrap_or_else(|| RunDtype::default_for::<B>(spec, &device));
        let precision = dtype.precision(spec, self.numerics)?;
        let bar = load_bar(&format!("{} on {spec}", self.what));
        let model =
            LoadedModel::<B>::from_checkpoint(self.checkpoint, &device, precision, advance(&bar))
                .with_context(|| format!("loading {}", self.checkpoint.path.display()))?
                .with_host_threads(self.threads.unwrap_or_else(|| spec.host_threads()))
                .with_numerics(self.numerics);
        bar.finish_and_clear();
        let model = Arc::new(model);
        let sessions = (0..self.count)
            .map(|_| {
                let session =
                    Session::new(Arc::clone(&model), self.capacity).with_vocab(self.vocab);
                match self.latency {
                    Some(latency) => Box::new(Emulated::new(session, latency)) as Box<dyn KvModel>,
                    None => Box::new(session) as Box<dyn KvModel>,
                }
            })
            .collect();
        Ok(Loaded {
            sessions,
            dtype: describe_dtype(dtype, precision, &self.checkpoint.block_formats),
        })
    }
}
