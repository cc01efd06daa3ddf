//! The browser engine end to end: `dsi serve` hosts `/play`, headless
//! Chromium with WebGPU (SwiftShader, f32) loads the bundled pair into the
//! wasm engine (`crates/dsi-web`, built by `bash scripts/build-web.sh`,
//! which scripts/test.sh runs first) and races non-SI, SI and DSI on the
//! page. Greedy, the three must emit the same tokens, with drafts accepted
//! and jobs preempted in DSI, and those tokens must be the native engine's
//! (`dsi generate --backend wgpu --dtype f32 --mode nonsi`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod browser;
mod serving;

use browser::Browser;
use serde_json::Value;
use serving::{Server, runtime};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const PROMPT: &str = "def parse_args(argv):\n    ";
const TOKENS: usize = 64;

/// WebGPU on a machine without a GPU: Chromium's SwiftShader adapter.
const WEBGPU: &[&str] = &["--enable-unsafe-webgpu"];

/// Where `dsi serve` finds the engine by default (beside `target/debug`).
fn engine_dir() -> PathBuf {
    std::env::var_os("DSI_PLAY_ENGINE").map_or_else(
        || {
            PathBuf::from(env!("CARGO_BIN_EXE_dsi"))
                .parent()
                .unwrap()
                .join("../web/play/pkg")
        },
        PathBuf::from,
    )
}

/// The native engine's greedy non-SI tokens on wgpu in f32.
fn native_tokens() -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_dsi"))
        .args([
            "generate",
            "--backend",
            "wgpu",
            "--dtype",
            "f32",
            "--mode",
            "nonsi",
        ])
        .args([
            "--max-tokens",
            &TOKENS.to_string(),
            "--format",
            "json",
            PROMPT,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    tokens(&report["tokens"])
}

fn tokens(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a token list: {value}"))
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// Opens `/play?autorun=1` with `query` and waits up to `within` for the
/// races' result.
async fn race(server: &Server, query: &str, within: Duration) -> (Browser, Value) {
    let browser = Browser::start(WEBGPU).await;
    browser
        .goto(&server.url(&format!("/play?autorun=1&{query}")))
        .await;
    let result = browser.wait_for("window.__result", within).await;
    assert!(result["error"].is_null(), "the page failed: {result}");
    (browser, result)
}

#[test]
fn play_runs_greedy_dsi_si_and_nonsi_in_the_browser_with_the_native_tokens() {
    let engine = engine_dir();
    assert!(
        engine.join("dsi_web_bg.wasm").exists(),
        "the browser engine is not built in {}: run bash scripts/build-web.sh (scripts/test.sh does)",
        engine.display()
    );
    let native = native_tokens();
    let server = Server::start(&["--targets", "1"]);
    let rt = runtime();
    rt.block_on(async {
        let query = format!(
            "max_tokens={TOKENS}&lookahead=4&targets=3&prompt={}",
            "def%20parse_args(argv)%3A%0A%20%20%20%20"
        );
        let (browser, result) = race(&server, &query, Duration::from_secs(400)).await;
        let page: Vec<Vec<u64>> = ["nonsi", "si", "dsi"]
            .iter()
            .map(|m| tokens(&result["tokens"][m]))
            .collect();
        assert_eq!(page[0].len(), TOKENS, "{result}");
        assert_eq!(page[1], page[0], "SI differs from non-SI in the page");
        assert_eq!(page[2], page[0], "DSI differs from non-SI in the page");
        assert_eq!(result["identical"], true);
        let dsi = &result["runs"]["dsi"]["counters"];
        assert!(dsi["accepted_tokens"].as_u64().unwrap() > 0, "{dsi}");
        assert!(dsi["jobs_preempted"].as_u64().unwrap() > 0, "{dsi}");
        let lanes: Vec<&str> = result["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(lanes, ["drafter", "target", "target", "target", "queue"]);
        let jobs = &result["jobs"];
        assert!(jobs["draft"].as_u64().unwrap() > 0, "{jobs}");
        assert!(jobs["accepted"].as_u64().unwrap() > 0, "{jobs}");
        let agree = page[0]
            .iter()
            .zip(&native)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "play: {} on {}; the page's first {agree} of {TOKENS} greedy tokens equal native wgpu f32 non-SI; tokens/s nonsi {:.2}, si {:.2}, dsi {:.2}; load {:.0} ms",
            if agree == TOKENS { "identical" } else { "diverged" },
            result["adapter"],
            result["runs"]["nonsi"]["tokens_per_s"].as_f64().unwrap(),
            result["runs"]["si"]["tokens_per_s"].as_f64().unwrap(),
            result["runs"]["dsi"]["tokens_per_s"].as_f64().unwrap(),
            result["load_ms"].as_f64().unwrap(),
        );
        assert!(
            agree >= 16,
            "the page's greedy tokens leave the native engine's at {agree}:\npage   {:?}\nnative {:?}",
            page[0],
            native
        );
        browser.close().await;
    });
}

#[test]
fn play_says_how_to_build_a_missing_engine() {
    let server = Server::start_custom(
        "127.0.0.1:0",
        &["--targets", "1", "--play-engine", "/nonexistent/pkg"],
        std::process::Stdio::inherit(),
        &[],
    );
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let response = client
            .get(server.url("/play/pkg/dsi_web_bg.wasm"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let text = response.text().await.unwrap();
        assert!(text.contains("scripts/build-web.sh"), "{text}");
        let page = client.get(server.url("/play")).send().await.unwrap();
        assert_eq!(page.status(), 200, "redirected to /play/");
        assert!(page.text().await.unwrap().contains("play.js"));
        let model = client
            .get(server.url("/play/models/target/config.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(model.status(), 200);
        let outside = client
            .get(server.url("/play/models/target/..%2F..%2FCargo.toml"))
            .send()
            .await
            .unwrap();
        assert_eq!(outside.status(), 404);
    });
}

/// The browser engine's figures on this machine's WebGPU (SwiftShader
/// without a GPU): tokens/s of each mode, time to load the pair and to the
/// first token, cold (first race: shaders compile on first use) and warm
/// (last race), and the wasm's size. `bash scripts/bench-web.sh` runs it;
/// a benchmark, not a test: it asserts only that the page worked.
#[test]
#[ignore = "a benchmark: bash scripts/bench-web.sh"]
fn bench_play() {
    let rounds: usize = std::env::var("DSI_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let wasm = engine_dir().join("dsi_web_bg.wasm");
    let bytes = std::fs::read(&wasm)
        .unwrap_or_else(|e| panic!("{}: {e}: run bash scripts/build-web.sh", wasm.display()));
    let gzipped = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(&wasm)
        .output()
        .unwrap()
        .stdout
        .len();
    let server = Server::start(&["--targets", "1"]);
    let rt = runtime();
    rt.block_on(async {
        let query = format!(
            "max_tokens={TOKENS}&lookahead=4&targets=2&rounds={rounds}&prompt={}",
            "def%20parse_args(argv)%3A%0A%20%20%20%20"
        );
        // A race of the three modes took up to about 3 minutes here.
        let within = Duration::from_secs(240 * rounds as u64 + 60);
        let (browser, r) = race(&server, &query, within).await;
        assert_eq!(r["identical"], true, "{r}");
        eprintln!("bench play: adapter {}", r["adapter"]);
        eprintln!(
            "bench play: wasm {:.1} MB, {:.2} MB gzipped; pair loaded in {:.0} ms",
            bytes.len() as f64 / 1e6,
            gzipped as f64 / 1e6,
            r["load_ms"].as_f64().unwrap()
        );
        eprintln!(
            "bench play: mode   | tokens/s warm | first token warm | tokens/s cold | first token cold | accepted | preempted"
        );
        for mode in ["nonsi", "si", "dsi"] {
            let warm = &r["runs"][mode];
            let cold = &r["first_round"][mode];
            let c = &warm["counters"];
            eprintln!(
                "bench play: {mode:6} | {:13.2} | {:13.0} ms | {:13.2} | {:13.0} ms | {:>4}/{:<4}| {}",
                warm["tokens_per_s"].as_f64().unwrap(),
                warm["ttft_ms"].as_f64().unwrap(),
                cold["tokens_per_s"].as_f64().unwrap(),
                cold["ttft_ms"].as_f64().unwrap(),
                c["accepted_tokens"],
                c["draft_tokens"],
                c["jobs_preempted"],
            );
        }
        let nonsi = r["runs"]["nonsi"]["tokens_per_s"].as_f64().unwrap();
        for mode in ["si", "dsi"] {
            let speedup = r["runs"][mode]["tokens_per_s"].as_f64().unwrap() / nonsi;
            eprintln!("bench play: {mode} over non-SI (warm, same page): {speedup:.2}x");
        }
        browser.close().await;
    });
}
