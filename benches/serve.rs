//! What the HTTP server costs and what batching buys: the same greedy DSI
//! generations on the bundled pair run the way `dsi generate` runs them
//! (encode, pool, decode the stream) and streamed through `dsi serve`'s
//! router over loopback, with batching on and off, interleaved, in one run;
//! then 64 concurrent streams through the server with batching off and on.
//!
//! Prints per-token time of the three single-client paths and their ratios
//! (targets: the server adds under 5%; batching changes single-stream
//! latency by under 5%), and for the 64 streams: errors, tokens/s, p50/p99
//! time to first token, with batching off and on, and the ratio (target:
//! batching gives at least 3x the tokens/s, TTFT p50 no worse).
//! `cargo bench --bench serve --no-default-features` (`DSI_BENCH_TOKENS`,
//! `DSI_BENCH_REPEATS`; `DSI_BENCH_EMULATE_TARGET_MS=TTFT,TPOT` pads every
//! target forward, batched or not, as `--emulate-target-ms` does: a target
//! whose forward costs the same for one row or many, the bandwidth-bound
//! regime of real model sizes).

#![allow(clippy::print_stdout)]

mod common;

use common::{bundled, env_or, load};

use dsi::core::TokenId;
use dsi::core::model::KvModel;
use dsi::core::sampling::Decoding;
use dsi::core::schedule::Mode;
use dsi::models::Session;
use dsi::models::checkpoint::TextTokenizer;
use dsi::sched::batch::DEFAULT_MAX_BATCH_TOKENS;
use dsi::sched::{CachedModel, Emulated, Latency, Pool, Request, Role, Update, WorkerHandle};
use dsi_server::codec::IncrementalText;
use dsi_server::{ServerConfig, State, TextCodec};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TARGETS: usize = 2;
const K: usize = 5;

struct Codec(TextTokenizer);

impl TextCodec for Codec {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>, String> {
        self.0.encode(text).map_err(|e| e.to_string())
    }

    fn decode(&self, tokens: &[TokenId]) -> Result<String, String> {
        self.0.decode(tokens).map_err(|e| e.to_string())
    }
}

/// One streamed completion over a fresh connection: time to the first text
/// chunk, total time, and whether it ended with `[DONE]`.
async fn stream(
    addr: std::net::SocketAddr,
    prompt: &str,
    tokens: usize,
) -> (Duration, Duration, bool) {
    let body =
        serde_json::json!({"prompt": prompt, "max_tokens": tokens, "stream": true, "lookahead": K})
            .to_string();
    let began = Instant::now();
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let mut first = None;
    let mut buffer = [0u8; 16384];
    loop {
        let n = socket.read(&mut buffer).await.expect("read");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buffer[..n]);
        if first.is_none() && seen.windows(8).any(|w| w == b"\"text\":\"") {
            first = Some(began.elapsed());
        }
    }
    let text = String::from_utf8_lossy(&seen);
    let ok = text.starts_with("HTTP/1.1 200") && text.contains("data: [DONE]");
    (first.unwrap_or_default(), began.elapsed(), ok)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let tokens = env_or("DSI_BENCH_TOKENS", 64);
    let repeats = env_or("DSI_BENCH_REPEATS", 5);
    let dir = bundled();
    let (target_ckpt, target) = load(&dir.join("target"));
    let (_, drafter) = load(&dir.join("drafter"));
    let prompts: Vec<String> = std::fs::read_to_string(dir.join("prompts.jsonl"))
        .expect("prompts")
        .lines()
        .take(4)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["prompt"]
                .as_str()
                .expect("prompt")
                .to_string()
        })
        .collect();
    let capacity = target_ckpt.config.max_context;
    let eos = target_ckpt.generation.eos_token_ids.clone();
    // Two pools over the same weights: batching on (the default budget)
    // and off (one task per forward).
    let emulate: Option<Latency> = std::env::var("DSI_BENCH_EMULATE_TARGET_MS")
        .ok()
        .map(|v| v.parse().expect("DSI_BENCH_EMULATE_TARGET_MS: TTFT,TPOT"));
    let target_model = |target: &Arc<_>| -> Box<dyn KvModel> {
        let session = Session::new(Arc::clone(target), capacity);
        match emulate {
            Some(latency) => Box::new(Emulated::new(session, latency)),
            None => Box::new(session),
        }
    };
    let pool = |max_batch_tokens: usize| {
        let spawn = |name: String, role| {
            WorkerHandle::spawn_batching(name, role, max_batch_tokens).expect("worker")
        };
        let drafter_worker = spawn(
            "drafter".into(),
            Role::Drafter(Box::new(CachedModel::new(Session::new(
                Arc::clone(&drafter),
                capacity,
            )))),
        );
        let targets = (0..TARGETS)
            .map(|i| {
                spawn(
                    format!("target {i}"),
                    Role::Target(Box::new(CachedModel::new(target_model(&target)))),
                )
            })
            .collect();
        Arc::new(Pool::new(Some(drafter_worker), targets).expect("pool"))
    };
    let batching = pool(DEFAULT_MAX_BATCH_TOKENS);
    let unbatched = pool(1);
    let mut config = ServerConfig::new("pystd", capacity);
    config.lookahead = K;
    config.eos = eos.clone();
    let codec: Arc<dyn TextCodec> = Arc::new(Codec(target_ckpt.tokenizer));
    let state = |pool: &Arc<Pool>| {
        Arc::new(State::new(
            Arc::clone(pool),
            Arc::clone(&codec),
            config.clone(),
        ))
    };
    let (state_on, state_off) = (state(&batching), state(&unbatched));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    runtime.block_on(async {
        let listen = |state: Arc<State>| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(dsi_server::serve(listener, state, std::future::pending()));
            addr
        };
        let (addr_on, addr_off) = (listen(state_on).await, listen(state_off).await);

        // Each round runs every prompt directly, through the batching
        // server and through the unbatched one, in rotating order (a
        // request's caches go when it ends, so each run pays its prefill).
        let mut lengths = vec![0usize; prompts.len()];
        let mut per_path = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..=repeats {
            for turn in 0..3 {
                let path = (round + turn) % 3;
                for (i, prompt) in prompts.iter().enumerate() {
                    let began = Instant::now();
                    if path > 0 {
                        let addr = if path == 1 { addr_on } else { addr_off };
                        let (_, _, ok) = stream(addr, prompt, tokens).await;
                        assert!(ok, "the server answered");
                    } else {
                        // What `dsi generate` does: encode the prompt, run
                        // the pool, stream the text as it is verified.
                        let ids = codec.encode(prompt).expect("tokens");
                        let mut text = IncrementalText::default();
                        let mut printed = 0;
                        let request = Request {
                            prompt: ids,
                            mode: Mode::Dsi.into(),
                            k: K,
                            max_new_tokens: tokens,
                            eos: eos.clone(),
                            decoding: Decoding::greedy(),
                            targets: None,
                        };
                        let g = batching
                            .generate(request, |update| {
                                if let Update::Tokens(new) = update {
                                    printed += text.push(codec.as_ref(), new).expect("text").len();
                                }
                            })
                            .await
                            .expect("generation");
                        std::hint::black_box(printed);
                        lengths[i] = g.tokens.len();
                    }
                    let per_token = began.elapsed().as_secs_f64() / lengths[i].max(1) as f64;
                    // Round 0 warms caches and allocators (and learns the lengths).
                    if round > 0 {
                        per_path[path].push(per_token);
                    }
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let [direct, on, off] = per_path.map(|v| mean(&v));
        println!(
            "one client, {tokens} tokens, {repeats} rounds: direct {:.3} ms/token, server with batching {:.3} ms/token, server without {:.3} ms/token; server overhead {:+.1}% (with batching, against direct), batching's single-stream cost {:+.1}%",
            direct * 1e3,
            on * 1e3,
            off * 1e3,
            (on / direct - 1.0) * 100.0,
            (on / off - 1.0) * 100.0
        );

        // 64 concurrent streams, batching off then on, twice.
        let mut rates = [Vec::new(), Vec::new()];
        let mut ttft_p50 = [Vec::new(), Vec::new()];
        for round in 0..2 {
            for (which, addr) in [(0, addr_off), (1, addr_on)] {
                let (rate, p50) = concurrent(addr, &prompts, tokens).await;
                println!(
                    "round {round}, batching {}: {rate:.1} tokens/s, time to first token p50 {p50:.0} ms",
                    if which == 1 { "on" } else { "off" }
                );
                rates[which].push(rate);
                ttft_p50[which].push(p50);
            }
        }
        let [off_rate, on_rate] = [mean(&rates[0]), mean(&rates[1])];
        let [off_ttft, on_ttft] = [mean(&ttft_p50[0]), mean(&ttft_p50[1])];
        if let Some(latency) = emulate {
            println!("(targets emulated at {latency} ms)");
        }
        println!(
            "64 concurrent streams: batching on {on_rate:.1} tokens/s vs off {off_rate:.1} ({:.2}x); time to first token p50 on {on_ttft:.0} ms vs off {off_ttft:.0} ms ({:.2}x)",
            on_rate / off_rate,
            on_ttft / off_ttft
        );
        for (name, pool) in [("on", &batching), ("off", &unbatched)] {
            let mut stats = dsi::sched::ForwardStats::default();
            let (drafter, targets) = pool.workers();
            for worker in drafter.into_iter().chain(targets) {
                if let Some(forwards) = worker.forwards() {
                    stats.merge(&forwards);
                }
            }
            println!(
                "batching {name}: {} forwards, {:.2} sequences and {:.1} rows per forward, {:.2} ms per forward",
                stats.members.count(),
                stats.members.sum() / stats.members.count().max(1) as f64,
                stats.rows.sum() / stats.rows.count().max(1) as f64,
                stats.seconds.sum() * 1e3 / stats.seconds.count().max(1) as f64,
            );
        }
    });
}

/// 64 concurrent streams through the server at `addr`: tokens/s in all and
/// the median time to first token in ms. Every stream must succeed.
async fn concurrent(addr: std::net::SocketAddr, prompts: &[String], tokens: usize) -> (f64, f64) {
    let began = Instant::now();
    let runs: Vec<_> = (0..64)
        .map(|i| {
            let prompt = prompts[i % prompts.len()].clone();
            tokio::spawn(async move { stream(addr, &prompt, tokens).await })
        })
        .collect();
    let mut ttft = Vec::new();
    for run in runs {
        let (first, _, ok) = run.await.expect("task");
        assert!(ok, "every stream is answered in full");
        ttft.push(first.as_secs_f64() * 1e3);
    }
    let wall = began.elapsed().as_secs_f64();
    ttft.sort_by(f64::total_cmp);
    ((ttft.len() * tokens) as f64 / wall, percentile(&ttft, 0.5))
}
