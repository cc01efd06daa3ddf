//! The browser's driver, natively: the bundled pair loaded from bytes on
//! the CPU backend, run under a blocking executor. The same code runs in
//! the page over WebGPU; here it must give non-SI's tokens in every mode,
//! with speculation really happening.

#![allow(clippy::unwrap_used)]

use dsi_core::TokenId;
use dsi_core::sampling::SamplingParams;
use dsi_core::schedule::{EventKind, Mode};
use dsi_models::device::{CpuBackend, DType};
use dsi_models::generate::Decoder;
use dsi_models::transformer::LoadedModel;
use dsi_models::{ModelConfig, checkpoint::SafetensorsFiles};
use dsi_web::{GenerateOptions, ModelFiles, Outcome, Pair, Progress};
use std::path::{Path, PathBuf};

fn bundled(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/pystd/{model}"))
}

fn pair() -> Pair<CpuBackend> {
    let target = ModelFiles::read_dir(&bundled("target")).unwrap();
    let drafter = ModelFiles::read_dir(&bundled("drafter")).unwrap();
    Pair::load(target, Some(drafter), &Default::default(), DType::F32).unwrap()
}

const PROMPT: &str = "def parse_args(argv):\n    ";

/// Runs `options`, checking that tokens stream in order and that every
/// timeline record names a worker lane or none.
fn run(pair: &Pair<CpuBackend>, options: &GenerateOptions) -> (Outcome, Vec<EventKind>) {
    let mut streamed: Vec<TokenId> = Vec::new();
    let mut kinds = Vec::new();
    let outcome = pollster::block_on(pair.generate(options, 7, |progress| match progress {
        Progress::Tokens(tokens) => streamed.extend_from_slice(tokens),
        Progress::Timeline(record) => {
            if let Some(device) = &record.device {
                assert!(
                    device == "drafter" || device.starts_with("target "),
                    "{device}"
                );
            }
            kinds.push(record.event.kind);
        }
    }))
    .unwrap();
    assert_eq!(streamed, outcome.tokens, "the stream is the output");
    (outcome, kinds)
}

/// Greedy decoding of the target alone after `prompt`, one token per
/// forward.
fn reference(prompt: &[TokenId], tokens: usize) -> Vec<TokenId> {
    let dir = bundled("target");
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = SafetensorsFiles::open_dir(&dir).unwrap();
    let model = LoadedModel::<CpuBackend>::from_weights(
        &config,
        &weights,
        &Default::default(),
        DType::F32,
        |_, _| {},
    )
    .unwrap();
    let mut decoder = Decoder::new(&model, 1024, SamplingParams::greedy()).unwrap();
    let mut out = vec![decoder.prefill(prompt).unwrap()];
    while out.len() < tokens {
        out.push(decoder.step(*out.last().unwrap()).unwrap());
    }
    out
}

#[test]
fn greedy_dsi_si_and_nonsi_emit_the_targets_tokens() {
    let pair = pair();
    let base = GenerateOptions {
        prompt: PROMPT.into(),
        max_tokens: 40,
        lookahead: 4,
        targets: 3,
        ..GenerateOptions::default()
    };
    let (nonsi, _) = run(
        &pair,
        &GenerateOptions {
            mode: Mode::NonSi,
            ..base.clone()
        },
    );
    assert_eq!(nonsi.tokens.len(), 40, "{:?}", nonsi.stop);
    let eos_free = nonsi.tokens.clone();
    let prompt = pair.tokenizer().encode(PROMPT).unwrap();
    assert_eq!(
        eos_free,
        reference(&prompt, 40),
        "non-SI is the target's greedy decode"
    );
    let (si, _) = run(
        &pair,
        &GenerateOptions {
            mode: Mode::Si,
            ..base.clone()
        },
    );
    assert_eq!(si.tokens, nonsi.tokens, "SI");
    assert!(si.counters.accepted_tokens > 0, "SI accepted no draft");
    let (dsi, kinds) = run(&pair, &base);
    assert_eq!(dsi.tokens, nonsi.tokens, "DSI");
    let c = &dsi.counters;
    assert!(c.accepted_tokens > 0, "DSI accepted no draft: {c:?}");
    assert!(c.jobs_preempted > 0, "DSI preempted no job: {c:?}");
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(dsi.targets, 3);
    for kind in [
        EventKind::Started,
        EventKind::Finished,
        EventKind::Preempted,
    ] {
        assert!(kinds.contains(&kind), "no {kind:?} on the timeline");
    }
}

#[test]
fn seeded_sampling_gives_the_same_tokens_in_every_mode() {
    let pair = pair();
    let base = GenerateOptions {
        prompt: PROMPT.into(),
        max_tokens: 32,
        temperature: 0.8,
        top_p: Some(0.95),
        seed: 11,
        ..GenerateOptions::default()
    };
    let outputs: Vec<Outcome> = [Mode::NonSi, Mode::Si, Mode::Dsi]
        .into_iter()
        .map(|mode| {
            run(
                &pair,
                &GenerateOptions {
                    mode,
                    ..base.clone()
                },
            )
            .0
        })
        .collect();
    assert_eq!(outputs[1].tokens, outputs[0].tokens, "SI");
    assert_eq!(outputs[2].tokens, outputs[0].tokens, "DSI");
    assert!(outputs[2].counters.accepted_tokens > 0);
    let other_seed = run(
        &pair,
        &GenerateOptions {
            mode: Mode::NonSi,
            seed: 12,
            ..base
        },
    )
    .0;
    assert_ne!(other_seed.tokens, outputs[0].tokens, "the seed matters");
}

#[test]
fn bad_files_and_settings_are_named() {
    let target = ModelFiles::read_dir(&bundled("target")).unwrap();
    let mut no_tokenizer = ModelFiles::new();
    for name in target.names().filter(|n| *n != "tokenizer.json") {
        no_tokenizer.insert(name, std::fs::read(bundled("target").join(name)).unwrap());
    }
    let e = Pair::<CpuBackend>::load(no_tokenizer, None, &Default::default(), DType::F32)
        .err()
        .unwrap();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    let mut broken = target.clone();
    broken.insert("model.safetensors", b"not a safetensors file".to_vec());
    let e = Pair::<CpuBackend>::load(broken, None, &Default::default(), DType::F32)
        .err()
        .unwrap();
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    let pair = Pair::<CpuBackend>::load(target, None, &Default::default(), DType::F32).unwrap();
    let options = GenerateOptions {
        prompt: PROMPT.into(),
        ..GenerateOptions::default()
    };
    let e = pollster::block_on(pair.generate(&options, 1, |_| {}))
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs a drafter"), "{e}");
    let nonsi = GenerateOptions {
        mode: Mode::NonSi,
        max_tokens: 3,
        ..options
    };
    let outcome = pollster::block_on(pair.generate(&nonsi, 1, |_| {})).unwrap();
    assert_eq!(outcome.tokens.len(), 3);
}
