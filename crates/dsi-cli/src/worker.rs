//! `dsi worker`: one model on one device, served to coordinators over gRPC
//! (`dsi generate`/`dsi serve --target-devices grpc://HOST:PORT,...`).
//!
//! The worker runs the same worker thread as an in-process one (per-request
//! caches, KV sync, fair queue, batching, verification); `dsi-remote`
//! carries its jobs and reports.

use crate::exit::UsageError;
use crate::model_args::{parse_device, parse_dtype};
use crate::pool_args::LoadSessions;
use anyhow::Context;
use clap::{Args, ValueEnum};
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::{DeviceSpec, RunDtype, dispatch};
use dsi_models::pair::{PairSide, pool_vocab};
use dsi_models::transformer::Numerics;
use dsi_remote::{AuthToken, ServeOptions, WorkerInfo, WorkerRole, WorkerService};
use dsi_sched::{CachedModel, Latency, Role, WorkerHandle};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve one model on one device to coordinators over gRPC.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Address to listen on (port 0: any free port; the one taken is
    /// printed). Loopback unless --auth-token-file or --insecure.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Model: a Hugging Face checkpoint folder or a GGUF file (default: the
    /// bundled target, or the bundled drafter with --role drafter).
    #[arg(long, value_name = "DIR_OR_GGUF")]
    model: Option<PathBuf>,
    /// Device: cpu, ndarray, wgpu, wgpu:N, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceSpec,
    /// Run dtype (default per device, as in `dsi generate`).
    #[arg(long, value_parser = parse_dtype)]
    dtype: Option<RunDtype>,
    /// Serve as a target server or as the drafter.
    #[arg(long, value_enum, default_value_t = RoleArg::Target)]
    role: RoleArg,
    /// KV-cache memory of all requests together, in MiB, which coordinators
    /// budget against (default: half the available memory on the CPU, 4096
    /// on a GPU).
    #[arg(long, value_name = "MIB")]
    kv_cache_mib: Option<usize>,
    /// Pad every forward to TTFT,TPOT[,PER_ROW] milliseconds (stand in for a
    /// larger model).
    #[arg(long, value_name = "TTFT,TPOT[,PER_ROW]")]
    emulate_ms: Option<Latency>,
    /// Host threads for the CPU backends (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// `invariant` or `fast`, as in `dsi generate`; every target of a pool
    /// must use the same.
    #[arg(long, default_value = "invariant")]
    numerics: Numerics,
    /// Longest forward that fills a cache, in tokens.
    #[arg(long, default_value_t = dsi_sched::cached::DEFAULT_PREFILL_CHUNK)]
    prefill_chunk: usize,
    /// Tokens one batched forward feeds at most (1: batching off).
    #[arg(long, default_value_t = dsi_sched::batch::DEFAULT_MAX_BATCH_TOKENS)]
    max_batch_tokens: usize,
    /// A file whose first line is a shared secret every call must carry
    /// (coordinators: --worker-token-file).
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Allow listening beyond loopback without an auth token.
    #[arg(long)]
    insecure: bool,
    /// Serve TLS with this PEM certificate chain (with --tls-key);
    /// coordinators then use grpcs:// and --worker-tls-ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    Target,
    Drafter,
}

pub(crate) fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let token = match &args.auth_token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    if !args.listen.ip().is_loopback() && token.is_none() && !args.insecure {
        return Err(UsageError(format!(
            "listening on {} lets other machines run jobs on this worker: pass --auth-token-file FILE \
             (and --worker-token-file FILE to the coordinator), or --insecure on a trusted network",
            args.listen
        ))
        .into());
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((read_file(cert, "certificate")?, read_file(key, "key")?)),
        _ => None,
    };
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err(UsageError("invalid threads: 0 (expected at least 1)".into()).into());
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("sizing the thread pool")?;
    }
    let role = match args.role {
        RoleArg::Target => WorkerRole::Target,
        RoleArg::Drafter => WorkerRole::Drafter,
    };
    let dir = args.model.clone().unwrap_or_else(|| match role {
        WorkerRole::Target => crate::bundled::target(),
        WorkerRole::Drafter => crate::bundled::drafter(),
    });
    let checkpoint = Checkpoint::open(&dir)
        .with_context(|| format!("loading the model in {}", dir.display()))?;
    let model = crate::identity::of_checkpoint(&dir)?;
    let capacity = checkpoint.config.max_context;
    // The tokenizer's ids, as the coordinator's pool samples them.
    let vocab = pool_vocab(PairSide::from(&checkpoint), None)?;
    let loaded = dispatch(
        args.device,
        LoadSessions {
            checkpoint: &checkpoint,
            what: &format!("{role}"),
            dtype: args.dtype,
            count: 1,
            vocab,
            capacity,
            latency: args.emulate_ms,
            numerics: args.numerics,
            threads: args.threads,
        },
    )??;
    let session = loaded
        .sessions
        .into_iter()
        .next()
        .context("no session was loaded")?;
    let cached = CachedModel::new(session).with_prefill_chunk(args.prefill_chunk);
    let worker_role = match role {
        WorkerRole::Target => Role::Target(Box::new(cached)),
        WorkerRole::Drafter => Role::Drafter(Box::new(cached)),
    };
    let handle = WorkerHandle::spawn_batching(
        format!("{} {role}", args.device),
        worker_role,
        args.max_batch_tokens,
    )?;
    let (kv_budget_bytes, _) = crate::kv_budget::for_device(args.kv_cache_mib, args.device)?;
    let info = WorkerInfo {
        role,
        model,
        dtype: loaded.dtype.clone(),
        device: args.device.to_string(),
        numerics: args.numerics.to_string(),
        vocab,
        context: capacity,
        kv_budget_bytes,
        footprint: handle.footprint(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let service = WorkerService::new(handle, info);
    // One thread for the network: a report crosses one thread boundary
    // (from the worker thread) before it is on the wire.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "listening on {addr} ({role} {} on {} {}{})",
            dir.display(),
            args.device,
            loaded.dtype,
            if tls.is_some() { ", TLS" } else { "" }
        );
        std::io::stdout().flush()?;
        let options = ServeOptions { token, tls };
        // A coordinator's stream never ends by itself: stop at the signal
        // without waiting for them (they see the connection close).
        tokio::select! {
            served = dsi_remote::serve(listener, service, options, std::future::pending()) => {
                served.context("serving")?;
            }
            () = dsi_server::termination() => eprintln!("stopping"),
        }
        anyhow::Ok(())
    })
}

/// The bytes of a file the user named (`what` it is, for the message).
pub(crate) fn read_file(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| UsageError(format!("cannot read the {what} {}: {e}", path.display())).into())
}

/// The shared secret in `path` (its first non-empty line).
pub(crate) fn read_token(path: &std::path::Path) -> anyhow::Result<AuthToken> {
    let contents = std::fs::read_to_string(path).map_err(|e| {
        UsageError(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    AuthToken::from_file_contents(&contents).ok_or_else(|| {
        UsageError(format!(
            "the token file {} is empty: put a secret on its first line",
            path.display()
        ))
        .into()
    })
}
