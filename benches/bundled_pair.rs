//! The real-model check of the scheduler: the bundled pair (models/pystd)
//! with the latencies of the paper's Phi-3 MBPP setting emulated (target
//! TTFT 180.3 ms, TPOT 100.2 ms; drafter TTFT 57.3 ms, TPOT 3.3 ms), k = 5,
//! 7 target servers. Prints the measured tokens/s of non-SI, SI and DSI on
//! held-out prompts, the pair's measured acceptance rate, and the offline
//! simulator's prediction for that rate.
//!
//! `cargo bench --bench bundled_pair` (`DSI_BENCH_PROMPTS`, `DSI_BENCH_TOKENS`).

#![allow(clippy::print_stdout)]

mod common;

use common::{bundled, env_or, load};

use dsi::core::acceptance::AcceptanceEstimator;
use dsi::core::sampling::Decoding;
use dsi::core::schedule::Mode;
use dsi::core::sim::{SimParams, Simulation};
use dsi::models::Session;
use dsi::models::measure::{greedy_continuation, teacher_forced_matches};
use dsi::sched::{CachedModel, Emulated, Latency, Pool, Request, Role, WorkerHandle};
use std::sync::Arc;

const K: usize = 5;
const SERVERS: usize = 7;

fn main() {
    let prompts_n = env_or("DSI_BENCH_PROMPTS", 4);
    let tokens = env_or("DSI_BENCH_TOKENS", 48);
    let dir = bundled();
    let (target_ckpt, target) = load(&dir.join("target"));
    let (_, drafter) = load(&dir.join("drafter"));
    let prompts: Vec<Vec<u32>> = std::fs::read_to_string(dir.join("prompts.jsonl"))
        .expect("prompts")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let text = v["prompt"].as_str().expect("prompt").to_string();
            target_ckpt.tokenizer.encode(&text).expect("tokens")
        })
        .collect();
    let eos = target_ckpt.generation.eos_token_ids.clone();

    // The paper's acceptance measurement on every shipped prompt.
    let mut estimator = AcceptanceEstimator::new();
    for prompt in &prompts {
        let continuation = greedy_continuation(&target, prompt, 128, &eos).expect("target");
        estimator
            .add_example(teacher_forced_matches(&drafter, prompt, &continuation).expect("drafter"));
    }
    let a = estimator.acceptance_rate().expect("acceptance");

    let target_latency = Latency::from_ms(180.3, 100.2);
    let drafter_latency = Latency::from_ms(57.3, 3.3);
    let capacity = 1024;
    let drafter_worker = WorkerHandle::spawn(
        "drafter",
        Role::Drafter(Box::new(CachedModel::new(Emulated::new(
            Session::new(Arc::clone(&drafter), capacity),
            drafter_latency,
        )))),
    )
    .expect("drafter");
    let targets = (0..SERVERS)
        .map(|i| {
            WorkerHandle::spawn(
                format!("target {i}"),
                Role::Target(Box::new(CachedModel::new(Emulated::new(
                    Session::new(Arc::clone(&target), capacity),
                    target_latency,
                )))),
            )
            .expect("target")
        })
        .collect();
    let pool = Pool::new(Some(drafter_worker), targets).expect("pool");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");

    let mut seconds = [0.0f64; 3];
    let mut produced = [0usize; 3];
    // Each generation is its own request (empty KV caches); the modes run
    // in an order that rotates from prompt to prompt, so none always runs
    // first, or right after another one warmed the machine.
    let modes = [Mode::NonSi, Mode::Si, Mode::Dsi];
    for (p, prompt) in prompts.iter().take(prompts_n).enumerate() {
        let mut reference = None;
        for turn in 0..modes.len() {
            let i = (turn + p) % modes.len();
            let mode = modes[i];
            let request = Request {
                prompt: prompt.clone(),
                mode: mode.into(),
                k: K,
                max_new_tokens: tokens,
                eos: Vec::new(),
                decoding: Decoding::greedy(),
                targets: None,
            };
            let g = runtime
                .block_on(pool.generate(request, |_| {}))
                .expect("generation");
            seconds[i] += g.stats.total_ms / 1e3;
            produced[i] += g.tokens.len();
            match &reference {
                None => reference = Some(g.tokens),
                Some(r) => assert_eq!(&g.tokens, r, "{mode} differs from another mode"),
            }
        }
    }
    let rate = |i: usize| produced[i] as f64 / seconds[i];
    let c = drafter_latency.tpot.as_secs_f64() / target_latency.tpot.as_secs_f64();
    let predicted = Simulation {
        params: SimParams::new(c, a, K, tokens).expect("parameters"),
        repeats: 2000,
        seed: 0,
    }
    .mean();
    println!("bundled pair, Phi-3 MBPP latencies emulated, k = {K}, {SERVERS} target servers");
    println!(
        "measured acceptance rate a = {a:.3} ({} prompts); c = {c:.4}",
        prompts.len()
    );
    println!(
        "tokens/s: non-SI {:.2}, SI {:.2}, DSI {:.2} ({} prompts x {tokens} tokens, identical outputs; \
         every run from empty caches, the order rotating per prompt)",
        rate(0),
        rate(1),
        rate(2),
        prompts_n.min(prompts.len())
    );
    println!(
        "measured speedups: DSI/SI {:.3}, DSI/non-SI {:.3}, SI/non-SI {:.3}",
        rate(2) / rate(1),
        rate(2) / rate(0),
        rate(1) / rate(0)
    );
    println!(
        "simulator at a = {a:.3}: DSI/SI {:.3}, DSI/non-SI {:.3}, SI/non-SI {:.3}",
        predicted.speedup_dsi_over_si(),
        predicted.speedup_dsi_over_nonsi(),
        predicted.speedup_si_over_nonsi()
    );
}
