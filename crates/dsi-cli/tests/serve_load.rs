//! A bounded load test on loopback against `dsi serve` with the bundled
//! pair, batching on (the default): 64 concurrent streams in mixed modes
//! and lookaheads, greedy and seeded-sampled, each equal token for token to
//! the same prompt and decoding alone in non-SI; then twice the queue limit
//! at once, refused with 429 exactly past the slots and the queue; and the
//! process's memory back near its baseline.

#![allow(clippy::unwrap_used)]

mod serving;

use serde_json::{Value, json};
use serving::{Server, metric, runtime, scrape, stream};
use std::time::{Duration, Instant};

const SLOTS: usize = 16;
const QUEUE: usize = 48;

fn prompts() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/pystd/prompts.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take(8)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["prompt"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn sixty_four_streams_then_twice_the_queue_limit() {
    // Emulated latencies keep each generation long enough that all of a
    // burst arrives while the first requests still run.
    let server = Server::start(&[
        "--max-running",
        &SLOTS.to_string(),
        "--max-queue",
        &QUEUE.to_string(),
        "--emulate-target-ms",
        "20,6",
        "--emulate-drafter-ms",
        "2,1",
        // A KV budget for about 7 requests' caches (drafter and two targets,
        // whole 4.2 MB segments of the target): with 16 generations
        // admitted, the rest wait for memory, and ended requests free theirs.
        "--kv-cache-mib",
        "64",
    ]);
    let prompts = prompts();
    let rt = runtime();
    let baseline_kib = rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let url = server.url("/v1/completions");
        let body = |i: usize, max_tokens: usize| {
            json!({"prompt": prompts[i % prompts.len()], "max_tokens": max_tokens, "stream": true, "stream_options": {"include_usage": true}})
        };
        // Stream i: prompt i % 8, greedy or (every other group of 8) sampled
        // with a seed of its prompt, in a mode and lookahead of its own.
        let sampled = |i: usize| (i / prompts.len()) % 2 == 1;
        let mixed = |i: usize, mode: &str, lookahead: usize| {
            let mut b = body(i, 16);
            b["mode"] = json!(mode);
            b["lookahead"] = json!(lookahead);
            if sampled(i) {
                b["temperature"] = json!(0.8);
                b["seed"] = json!(1000 + i % prompts.len());
            }
            b
        };

        // Each distinct prompt and decoding alone, in non-SI.
        let mut alone = Vec::new();
        for i in 0..2 * prompts.len() {
            let s = stream(&client, &url, &mixed(i, "nonsi", 1)).await;
            assert_eq!(s.status, 200);
            assert!(s.done);
            alone.push(s.text);
        }
        let reference = |i: usize| &alone[i % prompts.len() + if sampled(i) { prompts.len() } else { 0 }];
        let baseline_kib = server.rss_kib();

        // 64 at once: exactly the slots plus the queue, so none is refused.
        let began = Instant::now();
        let runs: Vec<_> = (0..SLOTS + QUEUE)
            .map(|i| {
                let mode = ["dsi", "si", "nonsi"][i % 3];
                let lookahead = 1 + i % 5;
                let (client, url, body) = (client.clone(), url.clone(), mixed(i, mode, lookahead));
                tokio::spawn(async move { stream(&client, &url, &body).await })
            })
            .collect();
        let mut ttft_ms = Vec::new();
        for (i, run) in runs.into_iter().enumerate() {
            let s = run.await.unwrap();
            assert_eq!(s.status, 200, "stream {i}: {:?}", s.error);
            assert!(s.done && s.error.is_none(), "stream {i} ended early: {:?}", s.error);
            assert_eq!(&s.text, reference(i), "stream {i} differs from its prompt and decoding alone in non-SI");
            ttft_ms.push(s.chunks.last().unwrap()["usage"]["ttft_ms"].as_f64().unwrap());
        }
        ttft_ms.sort_by(f64::total_cmp);
        eprintln!(
            "64 streams in {:.2} s; ttft p50 {:.0} ms, p99 {:.0} ms",
            began.elapsed().as_secs_f64(),
            ttft_ms[ttft_ms.len() / 2],
            ttft_ms[ttft_ms.len() * 99 / 100]
        );

        // Twice the queue limit at once: slots + queue are admitted, the
        // rest refused at once with 429 and Retry-After.
        let burst = 2 * QUEUE;
        let runs: Vec<_> = (0..burst)
            .map(|i| {
                let (client, url, body) = (client.clone(), url.clone(), body(i, 24));
                tokio::spawn(async move { stream(&client, &url, &body).await })
            })
            .collect();
        let mut served = 0;
        let mut refused = 0;
        for run in runs {
            let s = run.await.unwrap();
            match s.status {
                200 => {
                    assert!(s.done && s.error.is_none(), "{:?}", s.error);
                    served += 1;
                }
                429 => {
                    let error = s.error.unwrap();
                    assert_eq!(error["error"]["code"], "queue_full");
                    refused += 1;
                }
                other => panic!("unexpected status {other}: {:?}", s.error),
            }
        }
        assert_eq!(served, SLOTS + QUEUE, "every admitted request is served");
        assert_eq!(refused, burst - SLOTS - QUEUE, "429 exactly past the slots and the queue");

        let metrics = scrape(&client, &server).await;
        // Under load the workers batched: some forwards carried several
        // requests.
        for worker in ["cpu#0", "cpu drafter"] {
            let forwards = metric(&metrics, &format!("dsi_forward_sequences_count{{worker=\"{worker}\"}}")).unwrap();
            let alone = metric(&metrics, &format!("dsi_forward_sequences_bucket{{le=\"1.0\",worker=\"{worker}\"}}")).unwrap();
            assert!(alone < forwards, "{worker}: {alone} of {forwards} forwards carried one request");
        }
        let budget = metric(&metrics, "dsi_kv_budget_bytes{device=\"cpu\"}").unwrap();
        assert_eq!(budget, f64::from(64u32 << 20));
        let peak = metric(&metrics, "dsi_kv_peak_reserved_bytes{device=\"cpu\"}").unwrap();
        assert!(peak > 0.0 && peak <= budget, "peak reservation {peak} of {budget}");
        assert!(
            metric(&metrics, "dsi_kv_waited_requests_total").unwrap() > 0.0,
            "requests waited for KV memory"
        );
        assert_eq!(metric(&metrics, "dsi_kv_waiting_requests"), Some(0.0));
        assert_eq!(metric(&metrics, "dsi_queue_depth"), Some(0.0));
        assert_eq!(metric(&metrics, "dsi_active_generations"), Some(0.0));
        assert_eq!(
            metric(&metrics, "dsi_requests_total{endpoint=\"completions\",status=\"429\"}"),
            Some(refused as f64)
        );
        baseline_kib
    });
    // Memory: every ended request freed its caches and its own state.
    std::thread::sleep(Duration::from_millis(500));
    let after_kib = server.rss_kib();
    eprintln!("rss: baseline {baseline_kib} KiB, after 160 requests {after_kib} KiB");
    assert!(
        after_kib <= baseline_kib + 32 * 1024,
        "memory did not come back: {baseline_kib} KiB before, {after_kib} KiB after"
    );
}
