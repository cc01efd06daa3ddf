//! `dsi train` and `dsi measure` end to end, on tiny corpora and the
//! transformers fixtures.

mod common;

use common::{dsi, stderr};
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsi-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dsi-models/tests/fixtures")
        .join(name)
        .to_str()
        .expect("utf-8")
        .to_string()
}

/// Six small Python files with a shared style, so a model can learn them.
fn corpus(dir: &Path) {
    for i in 0..6 {
        let mut text = String::new();
        for j in 0..40 {
            text.push_str(&format!(
                "def function_{i}_{j}(value):\n    \"\"\"Return value plus {j}.\"\"\"\n    return value + {j}\n\n\n"
            ));
        }
        std::fs::write(dir.join(format!("module_{i}.py")), text).expect("corpus file");
    }
}

fn state(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("trainer_state.json")).expect("state"))
        .expect("json")
}

#[test]
fn train_writes_a_checkpoint_that_loads_learns_and_resumes() {
    let data = temp("corpus");
    corpus(&data);
    let out = temp("trained");
    let train = |steps: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--data",
            data.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
            "--vocab",
            "300",
            "--hidden",
            "32",
            "--layers",
            "1",
            "--heads",
            "2",
            "--kv-heads",
            "1",
            "--intermediate",
            "64",
            "--context",
            "128",
            "--steps",
            steps,
            "--batch",
            "2",
            "--accumulate",
            "2",
            "--seq-len",
            "32",
            "--warmup",
            "5",
            "--eval-every",
            "20",
            "--eval-windows",
            "4",
            "--holdout-every",
            "3",
        ];
        if resume {
            args.push("--resume");
        }
        dsi(&args)
    };
    let run = |steps: &str, resume: bool| {
        let result = train(steps, resume);
        assert!(result.status.success(), "{}", stderr(&result));
    };
    run("60", false);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let first = state(&out);
    assert_eq!(first["step"], 60);
    let loss = first["held_out_loss"].as_f64().expect("held-out loss");
    // A uniform guess over 300 tokens costs ln 300 = 5.7 nats.
    assert!(loss < 0.8 * 300f64.ln(), "the model did not learn: {loss}");

    // `dsi measure loss` splits the corpus as training did and scores the
    // same windows: the held-out figure of the stored (f16) weights.
    let measured = dsi(&[
        "measure",
        "loss",
        "--model",
        out.to_str().expect("path"),
        "--data",
        data.to_str().expect("path"),
        "--holdout-every",
        "3",
        "--seq-len",
        "32",
        "--windows",
        "4",
        "--format",
        "json",
    ]);
    assert!(measured.status.success(), "{}", stderr(&measured));
    let report: serde_json::Value = serde_json::from_slice(&measured.stdout).expect("json");
    let measured_loss = report[0]["loss"].as_f64().expect("loss");
    assert_eq!(report[0]["files"], 2, "{report}");
    assert!(
        (measured_loss - loss).abs() < 0.02 * loss,
        "measure loss {measured_loss} vs training's held-out {loss}"
    );

    assert!(out.join("resume/optimizer.bin").is_file());
    run("80", true);
    assert_eq!(state(&out)["step"], 80);
    // A folder without the resume state is refused with what to do.
    std::fs::remove_dir_all(out.join("resume")).expect("remove");
    let refused = train("90", true);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("train afresh without --resume"),
        "{}",
        stderr(&refused)
    );

    let generated = dsi(&[
        "generate",
        "--model",
        out.to_str().expect("path"),
        "--max-tokens",
        "8",
        "--format",
        "json",
        "def function_",
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    std::fs::remove_dir_all(&data).ok();
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn measure_acceptance_and_latency_of_a_pair() {
    let dir = temp("prompts");
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"def fibonacci(n):\"}\n{\"prompt\": \"import os\\n\"}\n{\"prompt\": \"class A:\"}\n",
    )
    .expect("prompts");
    let target = fixture("llama-gqa");
    let drafter = fixture("llama-bf16-sharded");
    let out = dsi(&[
        "measure",
        "acceptance",
        "--model",
        &target,
        "--drafter",
        &drafter,
        "--prompts",
        prompts.to_str().expect("path"),
        "--max-tokens",
        "24",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let a = report["acceptance_rate"].as_f64().expect("acceptance_rate");
    assert!((0.0..1.0).contains(&a), "{report}");
    assert_eq!(report["prompts"], 3);

    let out = dsi(&[
        "measure",
        "latency",
        "--model",
        &target,
        "--prompts",
        prompts.to_str().expect("path"),
        "--tokens",
        "4",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(report["ttft_ms"].as_f64().expect("ttft_ms") > 0.0);
    assert!(report["tpot_ms"].as_f64().expect("tpot_ms") > 0.0);

    // A malformed prompts file is a clear usage error.
    std::fs::write(&prompts, "def f():\n").expect("bad prompts");
    let out = dsi(&[
        "measure",
        "acceptance",
        "--model",
        &target,
        "--drafter",
        &drafter,
        "--prompts",
        prompts.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_refuses_bad_input_clearly() {
    let empty = temp("empty-corpus");
    let out = temp("never");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "train",
                "--data",
                "/nonexistent/dir",
                "--out",
                out.to_str().expect("p"),
            ],
            "/nonexistent/dir",
        ),
        (
            vec![
                "train",
                "--data",
                empty.to_str().expect("p"),
                "--out",
                out.to_str().expect("p"),
            ],
            "at least 2",
        ),
        (
            vec![
                "train",
                "--data",
                empty.to_str().expect("p"),
                "--out",
                out.to_str().expect("p"),
                "--hidden",
                "30",
                "--heads",
                "4",
            ],
            "multiple",
        ),
    ];
    for (args, expected) in cases {
        let result = dsi(&args);
        assert_eq!(
            result.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&result)
        );
        assert!(
            stderr(&result).contains(expected),
            "{args:?}: {}",
            stderr(&result)
        );
    }
    std::fs::remove_dir_all(&empty).ok();
    std::fs::remove_dir_all(&out).ok();
}
