//! GGUF files against transformers loading the same files.
//!
//! The fixtures in `tests/fixtures/gguf` were written by llama.cpp's own
//! writer (the `gguf` Python package) from transformers models by
//! `scripts/make_gguf_fixtures.py`: the `llama` and `qwen2` architectures,
//! F32, F16 and BF16 storage, every block format (Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1, Q4_K, Q5_K, Q6_K; the Q4_K file mixes Q6_K values and a Q5_K down
//! projection, as Q4_K_M files do), a byte-level BPE and a SentencePiece
//! tokenizer, and broken files. transformers loaded each file
//! (dequantizing its weights to f32) and recorded its logits, greedy
//! continuations and token ids, which the engine must reproduce: on the
//! `cpu` backend with the quantized weights kept as stored (what `dsi`
//! runs), and on `ndarray` with them dequantized at load (what a GPU does).

use burn::tensor::DType;
use burn::tensor::backend::Backend;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_models::checkpoint::{Checkpoint, SafetensorsFiles};
use dsi_models::device::{CpuBackend, DeviceSpec, NdarrayBackend};
use dsi_models::generate::Decoder;
use dsi_models::sampling::SamplingParams;
use dsi_models::test_backends::runs_on;
use dsi_models::transformer::{BatchMember, LoadedModel, Precision, WeightFormat};
use std::io::Write;
use std::path::{Path, PathBuf};

const FIXTURES: &[&str] = &[
    "llama-f32",
    "qwen2-f16",
    "llama-bf16-linear-rope",
    "llama-sentencepiece",
    "llama-q8_0",
    "llama-q4_0",
    "llama-q4_1",
    "llama-q5_0",
    "llama-q5_1",
    "qwen2-q4_k",
    "qwen2-q5_k",
    "qwen2-q6_k",
];
/// Maximum absolute difference, relative to the largest reference logit.
const RELATIVE_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn gguf(name: &str) -> PathBuf {
    fixtures().join("gguf").join(format!("{name}.gguf"))
}

struct Prompt {
    text: String,
    ids: Vec<TokenId>,
    greedy: Vec<TokenId>,
    margin: f32,
    logits: Vec<f32>,
}

struct Expected {
    prompts: Vec<Prompt>,
    texts: Vec<(String, Vec<TokenId>)>,
}

fn ids(v: &serde_json::Value) -> Vec<TokenId> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as TokenId)
        .collect()
}

/// What transformers recorded for `name`: `json` beside `safetensors`
/// logits of `vocab` columns.
fn read_expected(json: &Path, safetensors: &Path, vocab: usize) -> Expected {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("expected json")).expect("json");
    let bytes = std::fs::read(safetensors).expect("expected logits");
    let tensors = SafetensorsFiles::from_bytes(vec![("expected".into(), bytes)]).expect("tensors");
    let prompts = json["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let prompt_ids = ids(&p["ids"]);
            Prompt {
                text: p["text"].as_str().expect("text").to_string(),
                logits: tensors
                    .read(&format!("logits.{i}"), &[prompt_ids.len(), vocab])
                    .expect("logits")
                    .values,
                ids: prompt_ids,
                greedy: ids(&p["greedy"]),
                margin: p["min_top2_margin"].as_f64().unwrap_or(f64::INFINITY) as f32,
            }
        })
        .collect();
    let texts = json["texts"]
        .as_array()
        .map(|texts| {
            texts
                .iter()
                .map(|t| {
                    (
                        t["text"].as_str().expect("text").to_string(),
                        ids(&t["ids"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Expected { prompts, texts }
}

fn expected(name: &str, vocab: usize) -> Expected {
    let dir = fixtures().join("gguf");
    read_expected(
        &dir.join(format!("{name}.expected.json")),
        &dir.join(format!("{name}.expected.safetensors")),
        vocab,
    )
}

fn load<B: Backend>(
    name: &str,
    device: &B::Device,
    precision: Precision,
) -> (Checkpoint, LoadedModel<B>) {
    let checkpoint = Checkpoint::open(&gguf(name)).expect("fixture opens");
    let model = LoadedModel::<B>::from_checkpoint(&checkpoint, device, precision, |_, _| {})
        .expect("fixture loads");
    (checkpoint, model)
}

/// The largest |difference|, relative to the largest reference value.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    worst / scale
}

/// Token ids, logits at every prompt position and the greedy continuation
/// match transformers on the same file.
fn matches_transformers<B: Backend>(device: &B::Device, precision: Precision) {
    for name in FIXTURES {
        let (checkpoint, model) = load::<B>(name, device, precision);
        let expected = expected(name, model.config.vocab_size);
        for (text, want) in &expected.texts {
            let got = checkpoint.tokenizer.encode(text).expect("encode");
            assert_eq!(&got, want, "{name}: token ids of {text:?}");
        }
        for (i, prompt) in expected.prompts.iter().enumerate() {
            let got = checkpoint.tokenizer.encode(&prompt.text).expect("encode");
            assert_eq!(got, prompt.ids, "{name} prompt {i}: token ids");
            let mut cache = model.new_cache(64);
            let logits = model.forward(&prompt.ids, &mut cache).expect("forward");
            let error = relative_error(&logits.values, &prompt.logits);
            assert!(
                error <= RELATIVE_TOLERANCE,
                "{name} prompt {i}: logits {error} off"
            );
            // A continuation is only comparable where no step is a near-tie
            // within the tolerance (transformers' top two closer than the
            // error allowed could swap).
            let scale = prompt.logits.iter().fold(0f32, |m, x| m.max(x.abs()));
            if prompt.margin <= 2.0 * RELATIVE_TOLERANCE * scale {
                continue;
            }
            let mut decoder = Decoder::new(&model, 64, SamplingParams::greedy()).expect("decoder");
            let mut token = decoder.prefill(&prompt.ids).expect("prefill");
            let mut continuation = vec![token];
            while continuation.len() < prompt.greedy.len() {
                token = decoder.step(token).expect("step");
                continuation.push(token);
            }
            assert_eq!(continuation, prompt.greedy, "{name} prompt {i}: greedy");
        }
    }
}

#[test]
fn every_fixture_matches_transformers_with_weights_kept_quantized() {
    if runs_on(DeviceSpec::Cpu) {
        matches_transformers::<CpuBackend>(
            &burn::backend::flex::FlexDevice,
            Precision::host(WeightFormat::F32),
        );
    }
}

#[test]
fn every_fixture_matches_transformers_dequantized_at_load() {
    if runs_on(DeviceSpec::Ndarray) {
        matches_transformers::<NdarrayBackend>(
            &burn::backend::ndarray::NdArrayDevice::Cpu,
            DType::F32.into(),
        );
    }
}

/// llama.cpp permutes the query and key rows of `llama` files; the engine
/// undoes it: the GGUF file of the `llama-gqa` folder fixture gives the
/// logits transformers computed from the folder itself.
#[test]
fn llama_files_give_the_logits_of_their_hugging_face_folder() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let device = burn::backend::flex::FlexDevice;
    let (_, model) = load::<CpuBackend>("llama-f32", &device, DType::F32.into());
    let folder = fixtures().join("llama-gqa");
    let reference = read_expected(
        &folder.join("expected.json"),
        &folder.join("expected.safetensors"),
        model.config.vocab_size,
    );
    for prompt in &reference.prompts {
        let mut cache = model.new_cache(64);
        let logits = model.forward(&prompt.ids, &mut cache).expect("forward");
        assert!(relative_error(&logits.values, &prompt.logits) <= RELATIVE_TOLERANCE);
    }
}

/// Block-quantized projections and embeddings stay as stored: the model
/// reads the file's bytes per token, not four per weight.
#[test]
fn quantized_weights_stay_quantized() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let device = burn::backend::flex::FlexDevice;
    for (name, formats) in [
        ("llama-q4_0", &["Q4_0"][..]),
        ("qwen2-q4_k", &["Q4_K", "Q6_K", "Q5_K"][..]),
    ] {
        let (_, model) = load::<CpuBackend>(name, &device, Precision::host(WeightFormat::F32));
        let layer = &model.model.layers[0];
        let qkv = layer
            .attention
            .qkv_proj
            .host
            .as_ref()
            .expect("host weights");
        let mut seen: Vec<String> = qkv.parts().iter().map(|p| p.format().to_string()).collect();
        let [up, down] = layer.mlp.projections();
        for p in [up, down] {
            let host = p.host.as_ref().expect("host weights");
            seen.extend(host.parts().iter().map(|w| w.format().to_string()));
        }
        for format in formats {
            assert!(seen.iter().any(|s| s == format), "{name}: {seen:?}");
        }
        let embed = model
            .model
            .embed_tokens
            .host
            .as_ref()
            .expect("a host table");
        assert!(matches!(embed.format(), WeightFormat::Blocks(_)), "{name}");
        // Fewer than 1.1 bytes per weight read (f32 would be 4).
        let weights = model.config.num_parameters();
        assert!(
            model.weight_bytes_per_token() * 10 < weights * 11,
            "{name}: {} bytes per token for {weights} weights",
            model.weight_bytes_per_token()
        );
    }
}

/// A row's logits are the same bits alone, beside other sequences, and
/// fed in chunks of any size, with the weights block-quantized.
#[test]
fn quantized_rows_are_batch_and_chunk_invariant() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let device = burn::backend::flex::FlexDevice;
    for name in ["llama-q5_1", "qwen2-q4_k"] {
        let (_, model) = load::<CpuBackend>(name, &device, Precision::host(WeightFormat::F32));
        let never = CancelFlag::new();
        let a: Vec<TokenId> = (0..13).map(|i| (i * 7 + 3) % 300).collect();
        let b: Vec<TokenId> = (0..5).map(|i| (i * 11 + 1) % 300).collect();
        let alone = |tokens: &[TokenId]| {
            let mut cache = model.new_cache(64);
            model.forward(tokens, &mut cache).expect("alone").values
        };
        let (alone_a, alone_b) = (alone(&a), alone(&b));
        let (mut ca, mut cb) = (model.new_cache(64), model.new_cache(64));
        let batched = model.forward_batch(vec![
            BatchMember {
                tokens: &a,
                cache: &mut ca,
                rows: a.len(),
                cancel: &never,
            },
            BatchMember {
                tokens: &b,
                cache: &mut cb,
                rows: b.len(),
                cancel: &never,
            },
        ]);
        let host = |t: burn::tensor::Tensor<CpuBackend, 2>| -> Vec<u32> {
            t.into_data()
                .to_vec::<f32>()
                .expect("f32")
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|v| v.to_bits()).collect() };
        let mut batched = batched.into_iter().map(|r| host(r.expect("member")));
        assert_eq!(batched.next(), Some(bits(&alone_a)), "{name}: batched a");
        assert_eq!(batched.next(), Some(bits(&alone_b)), "{name}: batched b");
        for chunk in [1, 4, 6] {
            let mut cache = model.new_cache(64);
            let mut chunked = Vec::new();
            for piece in a.chunks(chunk) {
                chunked.extend(model.forward(piece, &mut cache).expect("chunk").values);
            }
            assert_eq!(bits(&chunked), bits(&alone_a), "{name}: chunks of {chunk}");
        }
    }
}

/// Every broken file is refused with one line that names what is wrong.
#[test]
fn broken_files_are_refused_with_one_line() {
    let cases = [
        ("broken-truncated", "truncated"),
        ("broken-unknown-type", "Q2_K"),
        ("broken-missing-key", "llama.embedding_length"),
        ("broken-wrong-shape", "ffn_gate"),
    ];
    for (name, says) in cases {
        let message = match Checkpoint::open(&gguf(name)) {
            Err(e) => e.to_string(),
            Ok(checkpoint) => {
                let device = burn::backend::ndarray::NdArrayDevice::Cpu;
                match LoadedModel::<NdarrayBackend>::from_checkpoint(
                    &checkpoint,
                    &device,
                    DType::F32,
                    |_, _| {},
                ) {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!("{name} loaded"),
                }
            }
        };
        assert!(message.contains(says), "{name}: {message}");
        assert!(message.contains(name), "{name} names the file: {message}");
        assert!(!message.contains('\n'), "{name}: one line: {message}");
    }
}

/// A folder holding one GGUF file opens as that file; with two, the error
/// names both.
#[test]
fn a_folder_with_one_gguf_file_opens_it() {
    let dir = std::env::temp_dir().join(format!("dsi-gguf-folder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(gguf("llama-q4_0"), dir.join("model.gguf")).expect("copy");
    let checkpoint = Checkpoint::open(&dir).expect("opens the one file");
    assert_eq!(checkpoint.path, dir.join("model.gguf"));
    std::fs::copy(gguf("llama-q4_1"), dir.join("other.gguf")).expect("copy");
    let err = Checkpoint::open(&dir).err().expect("two files").to_string();
    assert!(
        err.contains("model.gguf") && err.contains("other.gguf"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The chat template and end-of-turn tokens come from the metadata.
#[test]
fn end_of_sequence_comes_from_the_metadata() {
    let checkpoint = Checkpoint::open(&gguf("qwen2-q4_k")).expect("opens");
    assert!(checkpoint.generation.eos_token_ids.contains(&1));
    assert_eq!(checkpoint.config.bos_token_id, Some(0));
    let config: serde_json::Value =
        serde_json::from_str(checkpoint.tokenizer_config.as_deref().expect("a template"))
            .expect("json");
    assert!(
        config["chat_template"]
            .as_str()
            .expect("template")
            .contains("<|im_start|>")
    );
    assert_eq!(config["eos_token"], "</s>");
    assert!(
        Checkpoint::open(&gguf("llama-q4_0"))
            .expect("opens")
            .tokenizer_config
            .is_none()
    );
}

/// The engine's side of `scripts/gguf_agreement.py`, which holds a real
/// GGUF file's logits against transformers loading the same file (it needs
/// a real checkpoint, `scripts/fetch-models.sh`, so it is ignored here).
/// Reads `$DSI_AGREEMENT_DIR/request.json` (`{"model": path, "windows":
/// [[ids]...], "sample_every": n}`), runs each window on the `cpu` backend
/// with the quantized weights kept as stored, and writes `engine.json`
/// (each position's top-1 id, and the ids of `texts` by the file's own
/// tokenizer) and `engine_rows.f32` (the full logit rows of every
/// `sample_every`-th position, little-endian).
#[test]
#[ignore = "needs a real GGUF file: run scripts/gguf_agreement.py"]
fn logits_of_real_windows() {
    let dir = PathBuf::from(std::env::var("DSI_AGREEMENT_DIR").expect("DSI_AGREEMENT_DIR"));
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("request.json")).expect("request"))
            .expect("json");
    let model_path = PathBuf::from(request["model"].as_str().expect("model"));
    let every = request["sample_every"].as_u64().expect("sample_every") as usize;
    let checkpoint = Checkpoint::open(&model_path).expect("checkpoint");
    let device = burn::backend::flex::FlexDevice;
    let model = LoadedModel::<CpuBackend>::from_checkpoint(
        &checkpoint,
        &device,
        Precision::host(WeightFormat::F32),
        |_, _| {},
    )
    .expect("model")
    .with_host_threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut top1 = Vec::new();
    let mut rows = std::io::BufWriter::new(
        std::fs::File::create(dir.join("engine_rows.f32")).expect("rows file"),
    );
    let mut position = 0usize;
    for window in request["windows"].as_array().expect("windows") {
        let ids: Vec<TokenId> = window
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as TokenId)
            .collect();
        let mut cache = model.new_cache(ids.len());
        let logits = model.forward(&ids, &mut cache).expect("forward");
        for i in 0..logits.rows() {
            let row = logits.row(i);
            top1.push(dsi_core::verify::argmax(row));
            if position.is_multiple_of(every) {
                for v in row {
                    rows.write_all(&v.to_le_bytes()).expect("write");
                }
            }
            position += 1;
        }
    }
    rows.flush().expect("flush");
    let encoded: Vec<Vec<TokenId>> = request["texts"]
        .as_array()
        .map(|texts| {
            texts
                .iter()
                .map(|t| {
                    let text = t.as_str().expect("text");
                    checkpoint.tokenizer.encode(text).expect("encode")
                })
                .collect()
        })
        .unwrap_or_default();
    std::fs::write(
        dir.join("engine.json"),
        serde_json::json!({"top1": top1, "encoded": encoded}).to_string(),
    )
    .expect("engine.json");
}
