//! `dsi serve`: the OpenAI-compatible server and dashboard over a pool.
//!
//! Loads the pool like `dsi generate` (all workers of every mode, since each
//! request may choose its mode), wraps the target's tokenizer as the
//! server's text codec, reads the chat template from
//! `tokenizer_config.json` when there is one, binds, prints
//! `listening on http://ADDR` and serves until SIGTERM or Ctrl-C, then
//! drains.

use crate::codec::Codec;
use crate::exit::UsageError;
use crate::pool_args::PoolArgs;
use anyhow::Context;
use clap::Args;
use dsi_sched::Latency;
use dsi_server::auth::ApiKeys;
use dsi_server::routes::play::PlayFiles;
use dsi_server::{ChatTemplate, ServerConfig, State};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `dsi serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The model name of the API (default: the target folder's name).
    #[arg(long)]
    model_name: Option<String>,
    /// Generations running at once.
    #[arg(long, default_value_t = 16)]
    max_running: usize,
    /// Requests waiting for a generation slot before 429s.
    #[arg(long, default_value_t = 48)]
    max_queue: usize,
    /// Largest max_tokens a request may ask for (default: the context).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Longest prompt in tokens (default: the context minus one).
    #[arg(long)]
    max_prompt_tokens: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Seconds a request may take from arrival to its last token.
    #[arg(long, default_value_t = 300.0)]
    request_timeout_s: f64,
    /// Seconds in-flight generations may still run after SIGTERM.
    #[arg(long, default_value_t = 30.0)]
    drain_grace_s: f64,
    /// An API key clients must send as `Authorization: Bearer KEY` on
    /// /v1/*, /tokenize and /detokenize (repeatable; also $DSI_API_KEY).
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// A file of API keys, one per line (blank lines and # comments
    /// skipped), so keys stay out of the process list.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<std::path::PathBuf>,
    /// Require the key on /metrics and /healthz too.
    #[arg(long)]
    protect_metrics: bool,
    /// The browser engine's build that `/play` serves (`dsi_web.js`,
    /// `dsi_web_bg.wasm`; written by `bash scripts/build-web.sh`). Default:
    /// $DSI_PLAY_ENGINE, else `web/play/pkg` beside the binary's `target/`
    /// profile folder.
    #[arg(long, value_name = "DIR")]
    play_engine: Option<std::path::PathBuf>,
    /// Request logs on stderr (one line per request; `RUST_LOG` filters,
    /// default `warn,dsi=info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How `dsi serve` writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sends `tracing` events (the server's per-request lines) to stderr,
/// filtered by `RUST_LOG`.
fn init_logs(format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec)
            .map_err(|e| UsageError(format!("invalid RUST_LOG {spec:?}: {e}")))?,
        Err(_) => EnvFilter::new("warn,dsi=info"),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot start the logs: {e}"))
}

/// The keys from `--api-key`, `--api-key-file` and `$DSI_API_KEY`.
fn api_keys(args: &ServeArgs) -> anyhow::Result<ApiKeys> {
    let mut keys = args.api_keys.clone();
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError(format!(
                "cannot read --api-key-file {}: {e}",
                path.display()
            ))
        })?;
        let from_file: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if from_file.is_empty() {
            return Err(UsageError(format!(
                "--api-key-file {} holds no key: write one key per line",
                path.display()
            ))
            .into());
        }
        keys.extend(from_file);
    }
    if let Ok(key) = std::env::var("DSI_API_KEY") {
        keys.push(key.trim().to_string());
    }
    if args.protect_metrics && keys.iter().all(String::is_empty) {
        return Err(UsageError(
            "--protect-metrics needs a key: give --api-key, --api-key-file or DSI_API_KEY".into(),
        )
        .into());
    }
    Ok(ApiKeys::new(keys))
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            UsageError(format!(
                "invalid {flag}: {value} (expected a positive number of seconds)"
            ))
            .into()
        })
}

fn millis(latency: Option<Latency>) -> Option<(f64, f64)> {
    latency.map(|l| (l.ttft.as_secs_f64() * 1e3, l.tpot.as_secs_f64() * 1e3))
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let request_timeout = seconds(args.request_timeout_s, "--request-timeout-s")?;
    let keys = api_keys(&args)?;
    init_logs(args.log_format)?;
    let drain_grace = seconds(args.drain_grace_s, "--drain-grace-s")?;
    if args.max_running == 0 {
        return Err(UsageError("invalid max-running: 0 (expected at least 1)".into()).into());
    }
    crate::memory::return_large_blocks_to_the_os();
    let mode = args.pool.mode()?;
    let target = args.pool.open_target()?;
    let context = target.config.max_context;
    let dir = args.pool.target_dir();
    // A folder's tokenizer_config.json, or a GGUF file's template.
    let chat = match target.tokenizer_config.as_deref() {
        Some(json) => ChatTemplate::from_tokenizer_config(json)
            .map_err(|e| anyhow::anyhow!("the chat template of {}: {e}", dir.display()))?,
        None => ChatTemplate::default(),
    };
    let model_name = args.model_name.clone().unwrap_or_else(|| {
        // A folder's name, or a GGUF file's without the extension.
        let name = if dir.is_file() {
            dir.file_stem()
        } else {
            dir.file_name()
        }
        .map(|n| n.to_string_lossy().into_owned());
        match (args.pool.model.is_none(), name) {
            (true, _) => "pystd".to_string(),
            (false, Some(n)) => n,
            (false, None) => "model".to_string(),
        }
    });
    let loaded = args.pool.load_with(target, context, true)?;
    let mut config = ServerConfig::new(model_name, context);
    config.mode = mode;
    config.lookahead = args.pool.k.max(1);
    config.eos = loaded.generation.eos_token_ids.clone();
    config.vocab = Some(loaded.vocab);
    config.api_keys = keys;
    config.protect_metrics = args.protect_metrics;
    if let Some(m) = args.max_tokens {
        config.max_tokens = m.min(context - 1).max(1);
        config.default_max_tokens = config.default_max_tokens.min(config.max_tokens);
    }
    if let Some(m) = args.max_prompt_tokens {
        config.max_prompt_tokens = m.min(context - 1).max(1);
    }
    config.max_running = args.max_running;
    config.max_queue = args.max_queue;
    config.max_body_bytes = args.max_body_bytes;
    config.request_timeout = request_timeout;
    config.drain_grace = drain_grace;
    config.chat = chat;
    config.emulated_target_ms = millis(args.pool.emulate_target_ms);
    config.emulated_drafter_ms = millis(args.pool.emulate_drafter_ms);
    config.play = Some(PlayFiles {
        engine: args.play_engine.clone().unwrap_or_else(default_play_engine),
        models: crate::bundled::dir(),
    });
    let placement = match &loaded.profile {
        Some(profile) => format!("{}; auto from the {profile}", loaded.placement),
        None => loaded.placement,
    };
    let kv_budget = loaded.kv_budget;
    let codec = Arc::new(Codec(loaded.tokenizer));
    let state = Arc::new(State::new(Arc::new(loaded.pool), codec, config));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        if state.config.api_keys.is_empty() && !addr.ip().is_loopback() {
            eprintln!(
                "warning: serving on {addr}, reachable from other machines, without an API key: anyone who can reach it can use it; start with --api-key, --api-key-file or DSI_API_KEY"
            );
        }
        println!(
            "listening on http://{addr} ({}; {}; KV cache budget {kv_budget})",
            state.config.model_name, placement
        );
        std::io::stdout().flush()?;
        dsi_server::serve(listener, state, dsi_server::termination()).await?;
        eprintln!("drained; bye");
        anyhow::Ok(())
    })
}

/// `$DSI_PLAY_ENGINE`, else where `bash scripts/build-web.sh` puts the
/// engine for a binary built in this checkout: `target/web/play/pkg`,
/// beside `target/debug/dsi`.
fn default_play_engine() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("DSI_PLAY_ENGINE") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile = exe.parent().unwrap_or(std::path::Path::new("."));
    // `cargo test` binaries run from target/debug/deps.
    let profile = match profile.file_name().and_then(|n| n.to_str()) {
        Some("deps") => profile.parent().unwrap_or(profile),
        _ => profile,
    };
    profile.join("../web/play/pkg")
}
