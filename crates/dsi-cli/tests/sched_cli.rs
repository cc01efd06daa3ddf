//! `dsi generate --mode` and `dsi bench sched` end to end.

mod common;

use common::{dsi, stderr};
use std::path::PathBuf;
use std::process::Output;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dsi-models/tests/fixtures")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn generate(mode: &str, drafter: &str, extra: &[&str]) -> serde_json::Value {
    let target = fixture("llama-gqa");
    let drafter = fixture(drafter);
    let mut args = vec![
        "generate",
        "--model",
        &target,
        "--drafter",
        &drafter,
        "--mode",
        mode,
        "--max-tokens",
        "20",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    args.push("def fibonacci(n):");
    json(&dsi(&args))
}

#[test]
fn every_mode_emits_the_same_tokens_and_reports_stats() {
    let reference = generate("nonsi", "llama-gqa", &[]);
    for (mode, drafter, extra) in [
        ("si", "llama-gqa", vec!["--k", "3"]),
        ("dsi", "llama-gqa", vec!["--k", "3", "--targets", "3"]),
        (
            "dsi",
            "llama-bf16-sharded",
            vec![
                "--k",
                "2",
                "--target-devices",
                "cpu,ndarray",
                "--allow-mixed-targets",
            ],
        ),
    ] {
        // Targets padded to 5 ms a forward, so the drafter's first drafts
        // are ready before the non-SI lane has verified every token itself,
        // however loaded the machine is.
        let mut extra = extra;
        extra.extend(["--emulate-target-ms", "5,5"]);
        let report = generate(mode, drafter, &extra);
        assert_eq!(report["tokens"], reference["tokens"], "{mode} {drafter}");
        assert_eq!(report["mode"], mode);
        let stats = &report["stats"];
        for field in [
            "drafts",
            "draft_tokens",
            "accepted_tokens",
            "acceptance_by_position",
            "jobs_started",
            "jobs_finished",
            "jobs_preempted",
            "wasted_target_forwards",
            "ttft_ms",
            "tokens_per_s",
        ] {
            assert!(stats.get(field).is_some(), "{field} missing: {stats}");
        }
        assert!(
            stats["drafts"].as_u64().expect("drafts") > 0,
            "{mode} {drafter}: no drafts: {stats}"
        );
    }
    // A drafter that is the target itself: every draft is accepted, because
    // on the cpu backend a position's logits are the same bits whether the
    // drafter fed it alone or the target fed it among k + 1 (fixed-order
    // kernels, `Numerics::Invariant`). The target is padded to 20 ms a forward so the drafts are ready before
    // the non-SI lane has verified every token itself, however loaded the
    // machine is.
    let same = generate(
        "dsi",
        "llama-gqa",
        &["--k", "4", "--emulate-target-ms", "20,20"],
    );
    assert_eq!(same["tokens"], reference["tokens"]);
    assert!(
        same["stats"]["accepted_tokens"].as_u64().expect("accepted") > 0,
        "{same}"
    );
    let by_position = same["stats"]["acceptance_by_position"]
        .as_array()
        .expect("acceptance by position");
    assert!(
        !by_position.is_empty() && by_position.iter().all(|a| a.as_f64() == Some(1.0)),
        "a drafter equal to the target was rejected: {same}"
    );
}

#[test]
fn timeline_and_latency_emulation() {
    let dir = std::env::temp_dir().join(format!("dsi-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("timeline.jsonl");
    let report = generate(
        "dsi",
        "llama-bf16-sharded",
        &[
            "--emulate-target-ms",
            "30,10",
            "--emulate-drafter-ms",
            "3,1",
            "--timeline",
            file.to_str().expect("path"),
        ],
    );
    // Every target forward takes at least 10 ms, the first 30 ms.
    assert!(
        report["stats"]["ttft_ms"].as_f64().expect("ttft") >= 30.0,
        "{report}"
    );
    let text = std::fs::read_to_string(&file).expect("timeline written");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            assert!(v.get("t_ms").is_some() && v.get("epoch").is_some(), "{v}");
            v["kind"].as_str().expect("kind").to_string()
        })
        .collect();
    for kind in ["queued", "dispatched", "started", "finished", "committed"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} event");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_scheduler_arguments_exit_2_with_one_line() {
    let target = fixture("llama-gqa");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["generate", "--model", &target, "--mode", "dsi", "hi"],
            "needs a drafter",
        ),
        (
            vec!["generate", "--model", &target, "--mode", "fast", "hi"],
            "dsi, si or nonsi",
        ),
        (
            vec![
                "generate",
                "--model",
                &target,
                "--emulate-target-ms",
                "fast",
                "hi",
            ],
            "TTFT,TPOT",
        ),
        (
            vec![
                "generate",
                "--model",
                &target,
                "--target-devices",
                "cpu,tpu",
                "hi",
            ],
            "tpu",
        ),
        (
            vec!["generate", "--model", &target, "--targets", "0", "hi"],
            "targets",
        ),
        (
            vec![
                "generate",
                "--model",
                &target,
                "--drafter",
                &target,
                "--target-devices",
                "cpu,ndarray",
                "hi",
            ],
            "--allow-mixed-targets",
        ),
        (
            // The bundled target's first cache segment alone is about 4 MiB.
            vec!["generate", "--kv-cache-mib", "1", "hi"],
            "KV cache on cpu",
        ),
        (
            vec![
                "bench",
                "sched",
                "--a",
                "0.5",
                "--c",
                "0.1",
                "--k",
                "0",
                "--servers",
                "2",
            ],
            "k",
        ),
        (
            vec![
                "bench",
                "sched",
                "--a",
                "1.5",
                "--c",
                "0.1",
                "--k",
                "2",
                "--servers",
                "2",
            ],
            "a",
        ),
    ];
    for (args, expected) in cases {
        let out = dsi(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn bench_sched_compares_with_the_simulator() {
    let out = dsi(&[
        "bench",
        "sched",
        "--a",
        "0.8",
        "--c",
        "0.2",
        "--k",
        "2",
        "--servers",
        "3",
        "--target-ms",
        "4",
        "--tokens",
        "24",
        "--repeats",
        "1",
        "--format",
        "json",
    ]);
    let report = json(&out);
    for field in [
        "measured_speedup_dsi_over_si",
        "measured_speedup_dsi_over_nonsi",
        "predicted_speedup_dsi_over_si",
        "predicted_speedup_dsi_over_nonsi",
        "overhead_us_per_job",
    ] {
        assert!(
            report[field].as_f64().is_some(),
            "{field} missing: {report}"
        );
    }
    assert_eq!(report["lossless"], true);
}
