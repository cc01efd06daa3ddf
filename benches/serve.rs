//! What the HTTP server costs: the same greedy DSI generations on the
//! bundled pair run the way `dsi generate` runs them (encode, pool, decode
//! the stream) and streamed through `dsi serve`'s router over loopback,
//! interleaved, in one run; then 64 concurrent streams through the server.
//!
//! Prints per-token time of both paths and their ratio (target: the server
//! adds under 5%), and for the 64 streams: errors, tokens/s, p50/p99 time to
//! first token. `cargo bench --bench serve --no-default-features`
//! (`DSI_BENCH_TOKENS`, `DSI_BENCH_REPEATS`).

#![allow(clippy::print_stdout)]

mod common;

use common::{bundled, env_or, load};

use dsi::core::TokenId;
use dsi::core::sampling::Decoding;
use dsi::core::schedule::Mode;
use dsi::models::Session;
use dsi::models::checkpoint::TextTokenizer;
use dsi::sched::{CachedModel, Pool, Request, Role, Update, WorkerHandle};
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
    let spawn =
        |name: String, role| WorkerHandle::spawn_with_caches(name, role, 64).expect("worker");
    let drafter_worker = spawn(
        "drafter".into(),
        Role::Drafter(Box::new(CachedModel::new(Session::new(drafter, capacity)))),
    );
    let targets = (0..TARGETS)
        .map(|i| {
            spawn(
                format!("target {i}"),
                Role::Target(Box::new(CachedModel::new(Session::new(
                    Arc::clone(&target),
                    capacity,
                )))),
            )
        })
        .collect();
    let pool = Arc::new(Pool::new(Some(drafter_worker), targets).expect("pool"));
    let mut config = ServerConfig::new("pystd", capacity);
    config.lookahead = K;
    config.eos = eos.clone();
    let codec: Arc<dyn TextCodec> = Arc::new(Codec(target_ckpt.tokenizer));
    let state = Arc::new(State::new(Arc::clone(&pool), Arc::clone(&codec), config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(dsi_server::serve(listener, Arc::clone(&state), std::future::pending()));

        // Each round runs every prompt directly and every prompt through
        // the server, the two halves in alternating order. Consecutive
        // runs never share a prompt: a worker's freed cache keeps its
        // tokens, and a repeated prompt would skip its prefill.
        let mut lengths = vec![0usize; prompts.len()];
        let (mut direct, mut served) = (Vec::new(), Vec::new());
        for round in 0..=repeats {
            for half in 0..2 {
                let through_server = (round + half) % 2 == 1;
                for (i, prompt) in prompts.iter().enumerate() {
                    let began = Instant::now();
                    if through_server {
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
                            mode: Mode::Dsi,
                            k: K,
                            max_new_tokens: tokens,
                            eos: eos.clone(),
                            decoding: Decoding::greedy(),
                            targets: None,
                        };
                        let g = pool
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
                    match (round > 0, through_server) {
                        (true, true) => served.push(per_token),
                        (true, false) => direct.push(per_token),
                        (false, _) => {}
                    }
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (d, s) = (mean(&direct), mean(&served));
        println!(
            "one client, {tokens} tokens, {} runs each: direct {:.3} ms/token, through the server {:.3} ms/token, ratio {:.3} (server overhead {:+.1}%)",
            direct.len(),
            d * 1e3,
            s * 1e3,
            s / d,
            (s / d - 1.0) * 100.0
        );

        // 64 concurrent streams.
        let began = Instant::now();
        let runs: Vec<_> = (0..64)
            .map(|i| {
                let prompt = prompts[i % prompts.len()].clone();
                tokio::spawn(async move { stream(addr, &prompt, tokens).await })
            })
            .collect();
        let mut ttft = Vec::new();
        let mut errors = 0;
        for run in runs {
            let (first, _, ok) = run.await.expect("task");
            if ok {
                ttft.push(first.as_secs_f64() * 1e3);
            } else {
                errors += 1;
            }
        }
        let wall = began.elapsed().as_secs_f64();
        ttft.sort_by(f64::total_cmp);
        println!(
            "64 concurrent streams: {errors} errors, {:.1} tokens/s in all, time to first token p50 {:.0} ms, p99 {:.0} ms ({wall:.1} s)",
            (ttft.len() * tokens) as f64 / wall,
            percentile(&ttft, 0.5),
            percentile(&ttft, 0.99),
        );
    });
}
