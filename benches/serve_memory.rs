//! KV memory under load with a real-size model, as a user runs it: the
//! release `dsi serve` process with a random checkpoint of Llama-3.2-1B's
//! shape (bf16 on disk, a 128k context in its config.json, written by
//! `dsi random-checkpoint`), two target servers and a one-layer drafter of
//! the same width and vocabulary on the CPU, and a KV budget smaller than
//! all requests need at once; 16 concurrent greedy requests of 128 prompt
//! tokens and 32 new tokens each, then each request alone.
//!
//! Prints: peak resident memory while serving (reset after loading) and
//! while loading, against weights + budget + 1 GiB; tokens/s; requests that
//! waited for memory; the most KV bytes reserved and held, against the
//! budget; and whether every output equals the same request run alone.
//!
//! `cargo build --release -p dsi-cli && cargo bench --bench serve_memory`
//! (`DSI_BIN`, `DSI_BENCH_MODELS` for the checkpoints' folder,
//! `DSI_BENCH_REQUESTS`, `DSI_BENCH_KV_MIB`, `DSI_BENCH_TOKENS`).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

// Shared by the benches, each of which uses a part.
#[allow(dead_code)]
mod common;

use common::{bundled, env_or};
use dsi::models::checkpoint::TextTokenizer;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPT_TOKENS: usize = 128;
const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dsi_bin() -> PathBuf {
    let bin = std::env::var_os("DSI_BIN")
        .map_or_else(|| root().join("target/release/dsi"), PathBuf::from);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --release -p dsi-cli` or set DSI_BIN",
        bin.display()
    );
    bin
}

/// Writes the checkpoint once; later runs reuse it.
fn random_checkpoint(bin: &Path, dir: &Path, extra: &[&str]) {
    if dir.join("model.safetensors").exists() {
        return;
    }
    let status = Command::new(bin)
        .args(["random-checkpoint", "--shape", "llama-3.2-1b", "--out"])
        .arg(dir)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "dsi random-checkpoint failed");
}

/// Distinct prompts of exactly [`PROMPT_TOKENS`] tokens: the bundled
/// held-out prompts, each behind a line naming its request, cut to length.
fn prompts(tokenizer: &TextTokenizer, n: usize) -> Vec<String> {
    let texts: Vec<String> = std::fs::read_to_string(bundled().join("prompts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["prompt"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut text = format!("# request {i}\n");
            while tokenizer.encode(&text).unwrap().len() < PROMPT_TOKENS + 8 {
                text.push_str(&texts[(i + text.len()) % texts.len()]);
            }
            let mut ids = tokenizer.encode(&text).unwrap();
            ids.truncate(PROMPT_TOKENS);
            tokenizer.decode(&ids).unwrap()
        })
        .collect()
}

/// `/proc/PID/status` fields in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// One HTTP/1.1 exchange on a fresh connection; the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).unwrap();
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// A greedy completion's text and completion tokens.
fn complete(addr: &str, prompt: &str, tokens: usize) -> (String, u64) {
    let body = json!({"prompt": prompt, "max_tokens": tokens, "temperature": 0}).to_string();
    let (status, body) = http(addr, "POST", "/v1/completions", &body);
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    (
        value["choices"][0]["text"].as_str().unwrap().to_string(),
        value["usage"]["completion_tokens"].as_u64().unwrap(),
    )
}

/// A sample of the Prometheus text, labelled or not.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l[sample.len()..].trim().parse().ok())
        .unwrap_or(0.0)
}

fn metrics(addr: &str) -> String {
    http(addr, "GET", "/metrics", "").1
}

/// Bytes of weights the workers hold in f32: the targets share one copy.
fn weight_bytes(dir: &Path) -> f64 {
    let header = std::fs::read(dir.join("model.safetensors")).unwrap();
    let len = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
    let meta: Value = serde_json::from_slice(&header[8..8 + len]).unwrap();
    let values: u64 = meta
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, t)| {
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    values as f64 * 4.0
}

fn main() {
    let requests = env_or("DSI_BENCH_REQUESTS", 16);
    let budget_mib = env_or("DSI_BENCH_KV_MIB", 128);
    let new_tokens = env_or("DSI_BENCH_TOKENS", 32);
    let bin = dsi_bin();
    let models = std::env::var_os("DSI_BENCH_MODELS")
        .map_or_else(|| root().join("target/bench-models"), PathBuf::from);
    let (target, drafter) = (
        models.join("llama-3.2-1b"),
        models.join("llama-3.2-1b-1layer"),
    );
    random_checkpoint(&bin, &target, &[]);
    random_checkpoint(&bin, &drafter, &["--layers", "1"]);
    let tokenizer = TextTokenizer::from_file(&target.join("tokenizer.json")).unwrap();
    let prompts = prompts(&tokenizer, requests);

    let loading = Instant::now();
    let mut child: Child = Command::new(&bin)
        .args(["serve", "--addr", "127.0.0.1:0", "--targets", "2"])
        .arg("--model")
        .arg(&target)
        .arg("--drafter")
        .arg(&drafter)
        .args(["--kv-cache-mib", &budget_mib.to_string()])
        .args(["--max-running", &requests.to_string()])
        .args(["--request-timeout-s", "7200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let load_peak = status_bytes(pid, "VmHWM:");
    let after_load = status_bytes(pid, "VmRSS:");
    // Peak resident memory from here on: the serving peak.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    println!(
        "{line}loaded in {:.0} s: resident {:.2} GiB, peak while loading {:.2} GiB",
        loading.elapsed().as_secs_f64(),
        after_load as f64 / GIB,
        load_peak as f64 / GIB
    );

    // Sample the pool's own accounting while the burst runs.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(Mutex::new((0f64, 0f64, 0f64)));
    let sampler = {
        let (addr, done, most) = (addr.clone(), Arc::clone(&done), Arc::clone(&most));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let text = metrics(&addr);
                let mut m = most.lock().unwrap();
                m.0 =
                    m.0.max(metric(&text, "dsi_kv_reserved_bytes{device=\"cpu\"}"));
                m.1 = m.1.max(metric(&text, "dsi_kv_held_bytes{device=\"cpu\"}"));
                m.2 = m.2.max(metric(&text, "dsi_kv_waiting_requests"));
                drop(m);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let began = Instant::now();
    let together: Vec<(String, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| s.spawn(|| complete(&addr, p, new_tokens)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let burst = began.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let serving_peak = status_bytes(pid, "VmHWM:");
    let text = metrics(&addr);
    let tokens: u64 = together.iter().map(|(_, n)| n).sum();

    let mut equal = 0;
    let alone_began = Instant::now();
    for (prompt, (text, _)) in prompts.iter().zip(&together) {
        if complete(&addr, prompt, new_tokens).0 == *text {
            equal += 1;
        }
    }
    let alone = alone_began.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();

    let budget = budget_mib as f64 * MIB;
    let weights = weight_bytes(&target) + weight_bytes(&drafter);
    let bound = weights + budget + GIB;
    let (reserved, held, waiting) = *most.lock().unwrap();
    println!(
        "{requests} concurrent requests x ({PROMPT_TOKENS} prompt + {new_tokens} new tokens), KV budget {budget_mib} MiB"
    );
    println!(
        "  together: {tokens} tokens in {burst:.1} s = {:.2} tokens/s; alone, one after another: {alone:.1} s",
        tokens as f64 / burst
    );
    println!(
        "  peak resident while serving {:.2} GiB; weights {:.2} GiB + budget + 1 GiB = {:.2} GiB: {}",
        serving_peak as f64 / GIB,
        weights / GIB,
        bound / GIB,
        if (serving_peak as f64) <= bound {
            "within"
        } else {
            "OVER"
        }
    );
    println!(
        "  peak resident while loading {:.2} GiB (weights converted from the bf16 file)",
        load_peak as f64 / GIB
    );
    println!(
        "  KV reserved at most {:.1} MiB (pool's peak {:.1} MiB), held at most {:.1} MiB, of {budget_mib} MiB",
        reserved / MIB,
        metric(&text, "dsi_kv_peak_reserved_bytes{device=\"cpu\"}") / MIB,
        held / MIB
    );
    println!(
        "  requests that waited for memory: {} (at most {waiting} at once); evictions: none (a request reserves its worst case at admission and never loses its cache)",
        metric(&text, "dsi_kv_waited_requests_total")
    );
    println!("  outputs equal to the same request alone: {equal}/{requests}");
}
