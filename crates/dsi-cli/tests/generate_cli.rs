//! `dsi generate` and `dsi bench decode` end to end on the transformers fixtures.

use std::path::PathBuf;
mod common;

use common::{dsi, dsi_env, stderr};
use std::process::Output;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dsi-models/tests/fixtures")
        .join(name)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The first prompt of a fixture and transformers' greedy continuation of it.
fn reference(name: &str) -> (String, Vec<u64>) {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).expect("expected.json");
    let expected: serde_json::Value = serde_json::from_str(&text).expect("json");
    let prompt = &expected["prompts"][0];
    let greedy = prompt["greedy"]
        .as_array()
        .expect("greedy")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect();
    (prompt["text"].as_str().expect("text").to_string(), greedy)
}

#[test]
fn greedy_generation_reproduces_transformers() {
    for name in ["llama-gqa", "qwen2-bias"] {
        let (prompt, greedy) = reference(name);
        let model = fixture(name);
        let out = dsi(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "12",
            "--format",
            "json",
            &prompt,
        ]);
        let report = json(&out);
        let tokens: Vec<u64> = report["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        // The fixtures' EOS id is 1; transformers was asked not to stop.
        let stop = greedy.iter().position(|&t| t == 1).unwrap_or(greedy.len());
        assert_eq!(tokens, greedy[..stop], "{name}");
        for field in ["text", "prompt_tokens", "ttft_ms", "tokens_per_s"] {
            assert!(report.get(field).is_some(), "{field} missing: {report}");
        }
        assert!(report["prompt_tokens"].as_u64().unwrap() > 0);
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_seed_dependent() {
    let model = fixture("llama-gqa");
    let run = |seed: &str| {
        let out = dsi(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "16",
            "--temperature",
            "1.0",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--format",
            "json",
            "def",
        ]);
        json(&out)["tokens"].clone()
    };
    assert_eq!(run("5"), run("5"));
    assert_ne!(run("5"), run("6"));
}

/// A drafter whose embedding is padded to another size than the target's
/// (328 rows against 384, one tokenizer of 320 ids): every mode samples
/// the tokenizer's ids, and SI and DSI give non-SI's tokens, greedy and
/// seeded.
#[test]
fn a_differently_padded_drafter_gives_non_si_tokens() {
    let (target, drafter) = (
        fixture("qwen2-padded-target"),
        fixture("qwen2-padded-drafter"),
    );
    let run = |mode: &str, sampling: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            target.to_str().unwrap(),
            "--drafter",
            drafter.to_str().unwrap(),
            "--mode",
            mode,
            "--max-tokens",
            "24",
            "--format",
            "json",
        ];
        args.extend_from_slice(sampling);
        args.push("def fibonacci(n):");
        let out = dsi(&args);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        json(&out)["tokens"].clone()
    };
    for sampling in [&[][..], &["--temperature", "0.8", "--seed", "11"][..]] {
        let reference = run("nonsi", sampling);
        assert_eq!(reference.as_array().map(Vec::len), Some(24));
        for mode in ["si", "dsi"] {
            assert_eq!(run(mode, sampling), reference, "{mode} {sampling:?}");
        }
    }
}

#[test]
fn text_output_streams_the_continuation() {
    let model = fixture("llama-gqa");
    let out = dsi(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--max-tokens",
        "5",
        "import",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty());
    assert!(stderr(&out).contains("new tokens"), "{}", stderr(&out));
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let model = fixture("llama-gqa");
    let model = model.to_str().unwrap();
    let long_prompt = "def f(x): return x\n".repeat(200);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["generate", "--model", "/nonexistent/model", "hi"],
            "checkpoint folder",
        ),
        (vec!["generate", "--model", model, &long_prompt], "context"),
        (
            vec!["generate", "--model", model, "--temperature", "-1", "hi"],
            "temperature",
        ),
        (
            vec![
                "generate",
                "--model",
                model,
                "--top-p",
                "2",
                "--temperature",
                "1",
                "hi",
            ],
            "top_p",
        ),
        (
            vec!["generate", "--model", model, "--max-tokens", "0", "hi"],
            "max-tokens",
        ),
        (
            vec!["generate", "--model", model, "--backend", "tpu", "hi"],
            "tpu",
        ),
        (
            vec!["generate", "--model", model, "--dtype", "f8", "hi"],
            "f8",
        ),
    ];
    for (args, expected) in cases {
        let out = dsi(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// With no Vulkan driver, `--backend wgpu` is refused with one line that
/// names what to install (never cubecl's panic), by `generate` and by
/// `serve` before it listens.
#[cfg(target_os = "linux")]
#[test]
fn a_backend_that_cannot_start_exits_2_with_the_fix() {
    let model = fixture("llama-gqa");
    let model = model.to_str().unwrap();
    let no_driver = "/nonexistent/dsi-no-vulkan-driver.json";
    let hidden = [
        ("VK_ICD_FILENAMES", no_driver),
        ("VK_DRIVER_FILES", no_driver),
    ];
    for args in [
        vec!["generate", "--model", model, "--backend", "wgpu", "hi"],
        vec![
            "generate",
            "--model",
            model,
            "--drafter",
            model,
            "--target-devices",
            "cpu,wgpu",
            "hi",
        ],
        vec![
            "serve",
            "--model",
            model,
            "--backend",
            "wgpu",
            "--addr",
            "127.0.0.1:0",
        ],
    ] {
        let out = dsi_env(&args, &hidden);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(
            err.contains("wgpu cannot start") && err.contains("mesa-vulkan-drivers"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("adapter available"),
            "{err}"
        );
    }
}

/// A GPU number the machine does not have is refused with one line, by
/// `generate` and `serve`: `wgpu:7` (CI's lavapipe is no discrete GPU),
/// and in a `--features cuda` build `cuda:99` (no driver here; on a GPU
/// machine, no 100th GPU).
#[test]
fn a_gpu_number_the_machine_lacks_exits_2_with_one_line() {
    let model = fixture("llama-gqa");
    let model = model.to_str().unwrap();
    let mut backends = vec!["wgpu:7"];
    if cfg!(feature = "cuda") {
        backends.push("cuda:99");
    }
    for backend in backends {
        for args in [
            vec!["generate", "--model", model, "--backend", backend, "hi"],
            vec![
                "serve",
                "--model",
                model,
                "--backend",
                backend,
                "--addr",
                "127.0.0.1:0",
            ],
        ] {
            let out = dsi(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(err.contains(&format!("{backend} cannot start")), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

/// A scratch copy of the `llama-gqa` fixture, broken by `breakage`.
fn broken_copy(tag: &str, breakage: impl FnOnce(&std::path::Path)) -> PathBuf {
    broken_copy_of("llama-gqa", tag, breakage)
}

/// A scratch copy of `fixture`, broken by `breakage`.
fn broken_copy_of(
    fixture_name: &str,
    tag: &str,
    breakage: impl FnOnce(&std::path::Path),
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsi-cli-broken-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch copy of the fixture");
    for entry in std::fs::read_dir(fixture(fixture_name)).expect("scratch copy of the fixture") {
        let entry = entry.expect("scratch copy of the fixture");
        std::fs::copy(entry.path(), dir.join(entry.file_name()))
            .expect("scratch copy of the fixture");
    }
    breakage(&dir);
    dir
}

/// How a case breaks its copy of the fixture.
type Breakage = Box<dyn FnOnce(&std::path::Path)>;

fn edit_config(dir: &std::path::Path, from: &str, to: &str) {
    let config =
        std::fs::read_to_string(dir.join("config.json")).expect("scratch copy of the fixture");
    assert!(config.contains(from));
    std::fs::write(dir.join("config.json"), config.replace(from, to))
        .expect("scratch copy of the fixture");
}

#[test]
fn broken_checkpoints_exit_2_with_one_clear_line() {
    let cases: Vec<(&str, Breakage, &[&str])> = vec![
        (
            "shape",
            Box::new(|d| edit_config(d, "\"intermediate_size\": 128", "\"intermediate_size\": 96")),
            &["gate_proj.weight", "[96, 64]", "[128, 64]"],
        ),
        (
            "arch",
            Box::new(|d| edit_config(d, "\"model_type\": \"llama\"", "\"model_type\": \"bert\"")),
            &["model_type", "bert"],
        ),
        (
            "tokenizer",
            Box::new(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap()),
            &["tokenizer.json", "missing"],
        ),
        (
            "truncated",
            Box::new(|d| {
                let path = d.join("model.safetensors");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
            }),
            &["model.safetensors", "truncated"],
        ),
    ];
    for (tag, breakage, expected) in cases {
        refused_with_one_line(&broken_copy(tag, breakage), tag, expected);
    }
}

/// `dsi generate` on `dir` exits 2 with one line holding every `expected`
/// word; the scratch folder is removed.
fn refused_with_one_line(dir: &std::path::Path, tag: &str, expected: &[&str]) {
    let out = dsi(&[
        "generate",
        "--model",
        dir.to_str().expect("utf-8 path"),
        "hi",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{tag}: {err}");
    for word in expected {
        assert!(err.contains(word), "{tag}: {word} not in {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "{tag}: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Broken configurations of every family, and a SentencePiece model
/// without its tokenizer.json: exit 2 with the field (or file) named.
#[test]
fn broken_configs_of_every_family_exit_2_naming_the_field() {
    let cases: Vec<(&str, &str, Breakage, &[&str])> = vec![
        (
            "qwen3-qknorm",
            "qwen3-head-dim",
            Box::new(|d| edit_config(d, "\"head_dim\": 32", "\"head_dim\": 31")),
            &["head_dim", "even"],
        ),
        (
            "qwen3-qknorm",
            "qwen3-window",
            Box::new(|d| {
                edit_config(
                    d,
                    "\"use_sliding_window\": false",
                    "\"use_sliding_window\": true",
                )
            }),
            &["use_sliding_window"],
        ),
        (
            "phi3-longrope",
            "phi3-partial",
            Box::new(|d| {
                edit_config(
                    d,
                    "\"partial_rotary_factor\": 1.0",
                    "\"partial_rotary_factor\": 0.5",
                )
            }),
            &["partial_rotary_factor", "0.5"],
        ),
        (
            "phi3-longrope",
            "phi3-rope-type",
            Box::new(|d| edit_config(d, "\"longrope\"", "\"dynamic\"")),
            &["rope_scaling.rope_type", "dynamic"],
        ),
        (
            "phi3-tied-window",
            "phi3-act",
            Box::new(|d| edit_config(d, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"")),
            &["hidden_act", "gelu"],
        ),
        (
            "starcoder-mqa",
            "starcoder-mha",
            Box::new(|d| edit_config(d, "\"multi_query\": true", "\"multi_query\": false")),
            &["multi_query"],
        ),
        (
            "starcoder-mqa",
            "starcoder-act",
            Box::new(|d| {
                edit_config(
                    d,
                    "\"activation_function\": \"gelu_pytorch_tanh\"",
                    "\"activation_function\": \"relu\"",
                )
            }),
            &["activation_function", "relu"],
        ),
        (
            "starcoder-mqa",
            "starcoder-heads",
            Box::new(|d| edit_config(d, "\"n_head\": 4", "\"n_head\": 5")),
            &["n_embd", "n_head = 5"],
        ),
        (
            "llama2-sentencepiece",
            "spm-only",
            Box::new(|d| {
                std::fs::rename(d.join("tokenizer.json"), d.join("tokenizer.model")).unwrap()
            }),
            &["tokenizer.model", "save_pretrained"],
        ),
    ];
    for (fixture_name, tag, breakage, expected) in cases {
        refused_with_one_line(&broken_copy_of(fixture_name, tag, breakage), tag, expected);
    }
}

#[test]
fn bench_decode_reports_its_fields() {
    let model = fixture("llama-gqa");
    let out = dsi(&[
        "bench",
        "decode",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        "4",
        "--prefill-chunks",
        "16,64",
        "--batch",
        "3",
        "--format",
        "json",
    ]);
    let report = json(&out);
    assert!(report["batch_decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["batch_over_single"].as_f64().unwrap() > 0.0);
    let chunked = report["chunked_prefill"].as_array().unwrap();
    assert_eq!(chunked.len(), 2, "{report}");
    for (entry, chunk) in chunked.iter().zip([16, 64]) {
        assert_eq!(entry["chunk"], chunk);
        assert!(entry["tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(entry["prompt_tokens"].as_u64().unwrap() > 64);
    }
    for field in [
        "decode_tokens_per_s",
        "prefill_tokens_per_s",
        "bandwidth_fraction",
        "copy_bandwidth_gb_per_s",
    ] {
        assert!(
            report[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {report}"
        );
    }
}

#[test]
fn a_random_checkpoint_is_written_and_generates() {
    let dir = std::env::temp_dir().join(format!("dsi-random-cli-{}", std::process::id()));
    let out = dsi(&[
        "random-checkpoint",
        "--shape",
        "smollm-135m",
        "--layers",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_hidden_layers"], 1);
    assert_eq!(config["vocab_size"], 49_152);
    assert_eq!(config["torch_dtype"], "bfloat16");
    let out = dsi(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--max-tokens",
        "4",
        "--format",
        "json",
        "def f(x):",
    ]);
    let tokens = json(&out)["tokens"].as_array().unwrap().clone();
    assert!(!tokens.is_empty());
    assert!(tokens.iter().all(|t| t.as_u64().unwrap() < 49_152));

    let bad = dsi(&[
        "random-checkpoint",
        "--shape",
        "smollm-135m",
        "--layers",
        "31",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("1 to 30"), "{}", stderr(&bad));
    std::fs::remove_dir_all(&dir).ok();
}

/// A GGUF file wherever a checkpoint goes: greedy generation from a
/// quantized file reproduces transformers (loading the same file), DSI
/// with a GGUF drafter gives the same tokens, the file's chat template
/// renders the prompt transformers renders, and
/// `bench decode --dequantized` compares the file as stored and dequantized.
#[test]
fn gguf_files_generate_draft_and_bench() {
    let gguf = |name: &str| fixture("gguf").join(format!("{name}.gguf"));
    let text = std::fs::read_to_string(fixture("gguf").join("qwen2-q4_k.expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let prompt = expected["prompts"][0]["text"].as_str().unwrap();
    let greedy: Vec<u64> = expected["prompts"][0]["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let stop = greedy.iter().position(|&t| t == 1).unwrap_or(greedy.len());
    let target = gguf("qwen2-q4_k");
    let tokens = |extra: &[&str]| -> Vec<u64> {
        let mut args = vec![
            "generate",
            "--model",
            target.to_str().unwrap(),
            "--max-tokens",
            "12",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(prompt);
        json(&dsi(&args))["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    assert_eq!(tokens(&["--mode", "nonsi"]), greedy[..stop]);
    let drafter = gguf("qwen2-q6_k");
    assert_eq!(
        tokens(&["--mode", "dsi", "--drafter", drafter.to_str().unwrap()]),
        greedy[..stop],
        "DSI with a GGUF drafter"
    );

    // The file's chat template (ChatML), rendered as transformers renders
    // it from the same file.
    let out = dsi(&[
        "generate",
        "--model",
        target.to_str().unwrap(),
        "--max-tokens",
        "4",
        "--format",
        "json",
        "--chat",
        "--system",
        "Be brief.",
        "hi",
    ]);
    let chat_ids = expected["chat"]["ids"].as_array().unwrap().len() as u64;
    assert_eq!(json(&out)["prompt_tokens"].as_u64(), Some(chat_ids));

    let out = dsi(&[
        "bench",
        "decode",
        "--model",
        target.to_str().unwrap(),
        "--tokens",
        "2",
        "--rounds",
        "1",
        "--dequantized",
        "--format",
        "json",
    ]);
    let report = json(&out);
    let rows = report["dtypes"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[0]["dtype"], "f32-dequantized");
    assert_eq!(rows[1]["dtype"], "f32");
    let bytes = |row: &serde_json::Value| row["weight_bytes_per_token"].as_u64().unwrap();
    assert!(bytes(&rows[1]) * 4 < bytes(&rows[0]), "{report}");
}

/// Broken GGUF files exit 2 with one line naming the file and the fault.
#[test]
fn broken_gguf_files_exit_2_with_one_line() {
    for (name, says) in [
        ("broken-truncated", "truncated"),
        ("broken-unknown-type", "Q2_K"),
        ("broken-missing-key", "llama.embedding_length"),
        ("broken-wrong-shape", "ffn_gate"),
    ] {
        let path = fixture("gguf").join(format!("{name}.gguf"));
        let out = dsi(&["generate", "--model", path.to_str().unwrap(), "hi"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(says) && err.contains(name), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    }
}
