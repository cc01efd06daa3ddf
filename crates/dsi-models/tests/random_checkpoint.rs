//! Random checkpoints of a real shape (`dsi random-checkpoint`): the tensor
//! layout is exactly what the loader reads, a written checkpoint loads back
//! as the same model, and the padded tokenizer covers the vocabulary.

use dsi_models::checkpoint::{
    Checkpoint, HostTensor, RandomWeights, StoreDtype, TensorSource, TextTokenizer,
    padded_tokenizer_json, tensor_layout, write_random,
};
use dsi_models::config::{Family, ModelConfig, RopeScaling};
use dsi_models::device::CpuBackend;
use dsi_models::transformer::LoadedModel;
use std::cell::RefCell;
use std::path::Path;

const WEIGHTS: RandomWeights = RandomWeights { seed: 3, std: 0.05 };

/// Llama-3.2-1B's kind of model at a size a test loads in milliseconds,
/// with a vocabulary larger than the bundled tokenizer's.
fn small(tied: bool, biases: bool) -> ModelConfig {
    ModelConfig {
        vocab_size: 5000,
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        max_context: 512,
        tie_word_embeddings: tied,
        qkv_bias: biases,
        o_bias: biases,
        eos_token_ids: vec![0],
        bos_token_id: Some(0),
        ..ModelConfig::llama_3_2_1b()
    }
}

/// A small model of every other family: Qwen3 (query/key norms), Phi-3
/// (fused projections, LongRoPE) and StarCoder (LayerNorm, GELU MLP with
/// biases, learned positions, multi-query attention).
fn other_families() -> Vec<ModelConfig> {
    let qwen3 = ModelConfig {
        head_dim: 32,
        ..ModelConfig::qwen3_0_6b()
    };
    let phi3 = ModelConfig {
        family: Family::Phi3,
        tie_word_embeddings: false,
        rope_scaling: RopeScaling::LongRope {
            short_factor: (0..8).map(|i| 1.0 + f64::from(i) / 4.0).collect(),
            long_factor: (0..8).map(|i| 2.0 + f64::from(i) / 2.0).collect(),
            original_max_position_embeddings: 64,
            attention_factor: 1.2,
        },
        ..small(false, false)
    };
    let starcoder = ModelConfig {
        num_kv_heads: 1,
        ..ModelConfig::starcoder_168m()
    };
    [qwen3, phi3, starcoder]
        .into_iter()
        .map(|c| ModelConfig {
            vocab_size: 5000,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            head_dim: if c.family == Family::Qwen3 { 32 } else { 16 },
            num_kv_heads: c.num_kv_heads.min(2),
            max_context: 512,
            eos_token_ids: vec![0],
            bos_token_id: Some(0),
            ..c
        })
        .collect()
}

/// Records the names and shapes the loader asks for.
struct Recorder(RefCell<Vec<(String, Vec<usize>)>>);

impl TensorSource for Recorder {
    fn read(&self, name: &str, shape: &[usize]) -> dsi_models::Result<HostTensor> {
        self.0.borrow_mut().push((name.to_string(), shape.to_vec()));
        WEIGHTS.read(name, shape)
    }
}

fn load(config: &ModelConfig, weights: &dyn TensorSource) -> LoadedModel<CpuBackend> {
    LoadedModel::<CpuBackend>::from_weights(
        config,
        weights,
        &Default::default(),
        dsi_models::device::DType::F32,
        |_, _| {},
    )
    .expect("model")
}

#[test]
fn the_layout_is_what_the_loader_reads() {
    let llamas = [(true, false), (false, false), (false, true)].map(|(t, b)| small(t, b));
    for config in llamas.into_iter().chain(other_families()) {
        let recorder = Recorder(RefCell::new(Vec::new()));
        load(&config, &recorder);
        assert_eq!(
            recorder.0.into_inner(),
            tensor_layout(&config),
            "{config:?}"
        );
    }
}

fn bundled_tokenizer() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/pystd/target/tokenizer.json");
    std::fs::read(path).expect("bundled tokenizer")
}

#[test]
fn the_padded_tokenizer_covers_the_vocabulary_and_encodes_text_as_before() {
    let original = bundled_tokenizer();
    let padded = padded_tokenizer_json(&original, 5000).expect("padded");
    let (before, after) = (
        TextTokenizer::from_bytes(&original).expect("original"),
        TextTokenizer::from_bytes(&padded).expect("loads"),
    );
    assert_eq!(before.vocab_size(), 4096);
    assert_eq!(after.vocab_size(), 5000);
    let text = "def f(x):\n    return x + 1\n";
    assert_eq!(after.encode(text).unwrap(), before.encode(text).unwrap());
    assert_eq!(after.decode(&[4999]).unwrap(), "<|id:4999|>");
    assert_eq!(after.token_id("<|id:4096|>"), Some(4096));
    assert!(padded_tokenizer_json(b"{\"model\": {}}", 10).is_err());
}

#[test]
fn a_written_random_checkpoint_loads_back_as_the_same_model() {
    for config in std::iter::once(small(true, false)).chain(other_families()) {
        written_checkpoint_loads_back(&config);
    }
}

fn written_checkpoint_loads_back(config: &ModelConfig) {
    let direct = load(config, &WEIGHTS);
    let dir = std::env::temp_dir().join(format!("dsi-random-ckpt-{}", std::process::id()));
    let padded = padded_tokenizer_json(&bundled_tokenizer(), config.vocab_size).expect("padded");
    for (store, bound) in [(StoreDtype::F32, 0.0), (StoreDtype::Bf16, 4e-2)] {
        write_random(&dir, config, &WEIGHTS, store).expect("written");
        std::fs::write(dir.join("tokenizer.json"), &padded).expect("tokenizer written");
        let checkpoint = Checkpoint::open(&dir).expect("opens");
        assert_eq!(&checkpoint.config, config, "{store:?}");
        let back = LoadedModel::<CpuBackend>::from_checkpoint(
            &checkpoint,
            &Default::default(),
            dsi_models::device::DType::F32,
            |_, _| {},
        )
        .expect("loads");
        let prompt = [1, 4097, 4999, 17];
        let a = direct
            .forward(&prompt, &mut direct.new_cache(16))
            .expect("forward");
        let b = back
            .forward(&prompt, &mut back.new_cache(16))
            .expect("forward");
        let scale = a.values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .values
            .iter()
            .zip(&b.values)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= bound * scale,
            "{} {store:?}: {diff} vs {scale}",
            config.family
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
