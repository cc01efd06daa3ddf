//! `dsi worker` processes on loopback under `dsi generate` and `dsi serve`:
//! mixed local and remote targets (and a remote drafter) emit local non-SI's
//! tokens, greedy and seeded; a worker killed or stopped mid-request costs
//! time, not tokens; a restarted worker is used again; a wrong token, a
//! worker serving another model, or a worker exposed without a secret are
//! refused with messages that say what to do.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;
mod serving;

use common::{dsi, stderr};
use serde_json::{Value, json};
use serving::Server;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "def fibonacci(n):";

/// A `dsi worker` process; killed when dropped.
struct Worker {
    child: Child,
    url: String,
}

impl Worker {
    /// Starts `dsi worker ARGS` (listening on `listen`) and waits for its
    /// `listening on ADDR` line.
    fn start_on(listen: &str, args: &[&str]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dsi"))
            .args(["worker", "--listen", listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dsi worker starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Worker {
            child,
            url: format!("grpc://{addr}"),
        }
    }

    fn start(args: &[&str]) -> Worker {
        Self::start_on("127.0.0.1:0", args)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn generate(args: &[&str]) -> Value {
    generate_tokens(40, args)
}

fn generate_tokens(tokens: usize, args: &[&str]) -> Value {
    let tokens = tokens.to_string();
    let mut all = vec!["generate", "--max-tokens", &tokens, "--format", "json"];
    all.extend_from_slice(args);
    all.push(PROMPT);
    let out = dsi(&all);
    assert!(out.status.success(), "{all:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn errors(run: &Value) -> Vec<String> {
    run["stats"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dsi-remote-{}-{name}", std::process::id()))
}

#[test]
fn mixed_local_and_remote_workers_emit_non_si_tokens() {
    let a = Worker::start(&[]);
    let b = Worker::start(&[]);
    let drafter = Worker::start(&["--role", "drafter"]);
    let targets = format!("cpu,{},{}", a.url, b.url);
    let mut accepted = std::collections::HashMap::<&str, u64>::new();
    for sampling in [&[][..], &["--temperature", "0.8", "--seed", "11"][..]] {
        let mut local = vec!["--mode", "nonsi"];
        local.extend_from_slice(sampling);
        let reference = generate(&local);
        assert_eq!(reference["tokens"].as_array().unwrap().len(), 40);
        for mode in ["nonsi", "si", "dsi"] {
            let mut args = vec![
                "--mode",
                mode,
                "--target-devices",
                &targets,
                "--drafter-device",
                &drafter.url,
            ];
            args.extend_from_slice(sampling);
            let run = generate(&args);
            assert_eq!(run["tokens"], reference["tokens"], "{mode} {sampling:?}");
            assert!(errors(&run).is_empty(), "{mode}: {:?}", errors(&run));
            *accepted.entry(mode).or_default() += run["stats"]["accepted_tokens"].as_u64().unwrap();
        }
    }
    // Each drafting mode used the remote drafter's drafts somewhere.
    assert!(accepted["si"] > 0 && accepted["dsi"] > 0, "{accepted:?}");
    // Only remote targets, DSI over three of them with a local drafter.
    let remote = format!("{},{}", a.url, b.url);
    let run = generate(&["--mode", "dsi", "--target-devices", &remote]);
    assert_eq!(run["tokens"], generate(&["--mode", "nonsi"])["tokens"]);
    let workers: Vec<&str> = run["stats"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["jobs"].as_u64().unwrap() > 0)
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(workers.contains(&a.url.as_str()), "{workers:?}");
}

#[test]
fn a_served_pool_of_remote_workers_answers_like_a_local_one() {
    let a = Worker::start(&[]);
    let drafter = Worker::start(&["--role", "drafter"]);
    let targets = format!("cpu,{}", a.url);
    let server = Server::start(&[
        "--target-devices",
        &targets,
        "--drafter-device",
        &drafter.url,
    ]);
    let local = Server::start(&[]);
    for mode in ["nonsi", "dsi"] {
        let request = json!({"prompt": PROMPT, "max_tokens": 32, "mode": mode});
        let (_, remote) = complete(&server, &request);
        let (_, here) = complete(&local, &request);
        assert_eq!(
            remote["choices"][0]["text"], here["choices"][0]["text"],
            "{mode}"
        );
    }
}

/// POSTs a completion request; the status and the body.
fn complete(server: &Server, request: &Value) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(server.url("/v1/completions"))
            .json(request)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    })
}

/// Waits until `file` has a timeline line of a job started on `device`.
fn wait_for_start(file: &std::path::Path, device: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let started = text.lines().any(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|r| r["kind"] == "started" && r["device"] == device)
        });
        if started {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no job started on {device}");
}

/// The disturbed generation: its length, mode and both targets' emulated
/// latency ("TTFT,TPOT" in ms).
#[derive(Clone, Copy)]
struct Slow {
    tokens: usize,
    mode: &'static str,
    emulate: &'static str,
}

/// Runs a slow generation over a local and a remote target and does
/// `to_worker` to the remote one once its first job started.
fn disturb_mid_request(
    slow: Slow,
    extra: &[&str],
    to_worker: impl FnOnce(&Worker),
) -> (Value, String) {
    let worker = Worker::start(&["--emulate-ms", slow.emulate]);
    // SI and non-SI run on the first target (the local one takes over):
    // the remote one, so that it is in use when disturbed.
    let targets = if slow.mode == "dsi" {
        format!("cpu,{}", worker.url)
    } else {
        format!("{},cpu", worker.url)
    };
    let timeline = temp(&format!("timeline-{}", worker.child.id()));
    let mut args = vec![
        "generate".to_owned(),
        "--max-tokens".into(),
        slow.tokens.to_string(),
        "--format".into(),
        "json".into(),
        "--mode".into(),
        slow.mode.into(),
        "--target-devices".into(),
        targets,
        "--emulate-target-ms".into(),
        slow.emulate.into(),
        "--timeline".into(),
        timeline.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push(PROMPT.into());
    let child = Command::new(env!("CARGO_BIN_EXE_dsi"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_start(&timeline, &worker.url);
    to_worker(&worker);
    let out = child.wait_with_output().unwrap();
    std::fs::remove_file(&timeline).ok();
    assert!(out.status.success(), "{}", stderr(&out));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        worker.url.clone(),
    )
}

#[test]
fn a_worker_killed_mid_request_costs_time_not_tokens() {
    let reference = generate(&["--mode", "nonsi"]);
    let slow = Slow {
        tokens: 40,
        mode: "dsi",
        emulate: "30,15",
    };
    let (run, url) = disturb_mid_request(slow, &[], |worker| worker.signal("-KILL"));
    assert_eq!(run["tokens"], reference["tokens"]);
    let errors = errors(&run);
    assert!(
        errors.iter().any(|e| e.contains(&url)),
        "the lost worker is named: {errors:?}"
    );
}

#[test]
fn a_stopped_worker_is_retired_at_the_deadline() {
    // Long enough to outlast the deadline (400 tokens at 40 ms a
    // verification, seconds on the local target alone): the stopped
    // worker's job must be given up on, not just left behind when the
    // request ends, even when a rejection preempted it before the deadline
    // (DSI); under SI the local target, named second, takes over.
    let reference = generate_tokens(400, &["--mode", "nonsi"]);
    for mode in ["dsi", "si"] {
        let slow = Slow {
            tokens: 400,
            mode,
            emulate: "60,40",
        };
        let (run, _) = disturb_mid_request(slow, &["--job-timeout-ms", "1000"], |worker| {
            worker.signal("-STOP");
        });
        assert_eq!(run["tokens"], reference["tokens"], "{mode}");
        let errors = errors(&run);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("no result within 1000 ms")),
            "{mode}: {errors:?}"
        );
    }
}

#[test]
fn a_restarted_worker_is_used_again() {
    let worker = Worker::start(&[]);
    let listen = worker.url.trim_start_matches("grpc://").to_owned();
    // The remote worker is the pool's only target: a request that succeeds
    // ran on it.
    let server = Server::start(&["--target-devices", &worker.url, "--mode", "nonsi"]);
    let request = json!({"prompt": PROMPT, "max_tokens": 16, "mode": "nonsi"});
    let complete = || complete(&server, &request);
    let (status, before) = complete();
    assert_eq!(status, 200, "{before}");
    drop(worker);
    let (status, down) = complete();
    assert_ne!(status, 200, "no target left: {down}");
    assert!(
        down.to_string().contains(&listen),
        "the error names the worker: {down}"
    );
    let _restarted = Worker::start_on(&listen, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, again) = complete();
        if status == 200 {
            assert_eq!(again["choices"][0]["text"], before["choices"][0]["text"]);
            break;
        }
        assert!(Instant::now() < deadline, "never used again: {again}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn wrong_secrets_other_models_and_exposed_workers_are_refused() {
    let secret = temp("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let wrong = temp("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let guarded = Worker::start(&["--auth-token-file", secret.to_str().unwrap()]);
    let refused = |args: &[&str], expect: &str| {
        let mut all = vec!["generate", "--max-tokens", "4", "--mode", "nonsi"];
        all.extend_from_slice(args);
        all.push(PROMPT);
        let out = dsi(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains(expect), "{args:?}: {message}");
    };
    refused(&["--target-devices", &guarded.url], "auth token");
    refused(
        &[
            "--target-devices",
            &guarded.url,
            "--worker-token-file",
            wrong.to_str().unwrap(),
        ],
        "auth token",
    );
    let ok = generate(&[
        "--mode",
        "nonsi",
        "--target-devices",
        &guarded.url,
        "--worker-token-file",
        secret.to_str().unwrap(),
    ]);
    assert!(errors(&ok).is_empty());

    // The drafter's checkpoint served as a target: another model.
    let bundled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/pystd");
    let drafter_dir = bundled.join("drafter");
    let other = Worker::start(&["--model", drafter_dir.to_str().unwrap()]);
    refused(&["--target-devices", &other.url], "serves another model");
    // A drafter where a target belongs.
    let drafter = Worker::start(&["--role", "drafter"]);
    refused(&["--target-devices", &drafter.url], "--role target");

    // Listening beyond loopback needs a secret or --insecure.
    let out = dsi(&["worker", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--auth-token-file"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&secret).ok();
    std::fs::remove_file(&wrong).ok();
}
