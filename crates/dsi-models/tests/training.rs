//! The training loop's recipe: batched forwards and gradient accumulation
//! compute the one-sequence-at-a-time loss and gradients, `--resume`
//! continues bit for bit, the residual projections start scaled by depth,
//! and the corpus holds out whole files per folder.
#![cfg(feature = "train")]

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, ElementConversion, Tensor};
use dsi_core::TokenId;
use dsi_models::checkpoint::{HostTensor, SafetensorsFiles, TensorSource};
use dsi_models::config::{Family, ModelConfig, RopeScaling};
use dsi_models::device::CpuBackend;
use dsi_models::loss::{batch_loss, scalar};
use dsi_models::train::corpus::{Corpus, Selection};
use dsi_models::train::{DepthScaledInit, RESUME_DIR, StoreDtype, TrainSpec, train};
use dsi_models::transformer::LoadedModel;
use dsi_models::transformer::names::ModelNames;
use std::path::{Path, PathBuf};

type Train = Autodiff<CpuBackend>;

fn config(layers: usize) -> ModelConfig {
    ModelConfig {
        family: Family::Llama,
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: layers,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        max_context: 64,
        sliding_window: None,
        tie_word_embeddings: false,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        eos_token_ids: vec![0],
        bos_token_id: Some(0),
    }
}

fn spec(batch: usize, accumulate: usize, steps: usize) -> TrainSpec {
    TrainSpec {
        config: config(2),
        steps,
        batch,
        accumulate,
        seq_len: 16,
        lr: 3e-3,
        warmup: 2,
        seed: 5,
        eval_every: 2,
        eval_windows: 3,
        store: StoreDtype::F32,
    }
}

/// A stream with structure to learn: counting runs modulo the vocabulary.
fn stream(len: usize, salt: usize) -> Vec<TokenId> {
    (0..len)
        .map(|i| ((i * 7 + salt + i / 13) % 63 + 1) as TokenId)
        .collect()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsi-training-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn weights(dir: &Path) -> Vec<(String, HostTensor)> {
    let files = SafetensorsFiles::open_dir(dir).expect("checkpoint");
    let config = config(2);
    ModelNames::of(&config)
        .tensors(&config)
        .into_iter()
        .map(|(name, shape)| {
            let tensor = files.read(&name, &shape).expect("tensor");
            (name, tensor)
        })
        .collect()
}

fn max_difference(a: &[(String, HostTensor)], b: &[(String, HostTensor)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            ta.values.iter().zip(&tb.values).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn a_batched_forward_gives_the_loss_of_its_windows_one_by_one() {
    let device = Default::default();
    let init = DepthScaledInit::new(&config(2), 1, 0.02);
    let model = LoadedModel::<CpuBackend>::from_weights(
        &config(2),
        &init,
        &device,
        burn::tensor::DType::F32,
        |_, _| {},
    )
    .expect("model");
    let tokens = stream(200, 3);
    let windows: Vec<&[TokenId]> = [0, 40, 97].iter().map(|&s| &tokens[s..s + 17]).collect();
    let together = scalar(batch_loss(&model, &windows).expect("batched")).expect("value");
    let alone: f64 = windows
        .iter()
        .map(|w| scalar(batch_loss(&model, &[*w]).expect("alone")).expect("value"))
        .sum::<f64>()
        / 3.0;
    assert!((together - alone).abs() < 1e-5, "{together} vs {alone}");
    // Windows of different lengths are refused, not truncated.
    let ragged = [&tokens[0..17], &tokens[0..9]];
    assert!(batch_loss(&model, &ragged).is_err());
}

/// Every float parameter's gradient: the largest magnitude, by the
/// parameter's path in the module.
struct GradientSizes<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    sizes: Vec<(String, f32)>,
}

impl ModuleVisitor<Train> for GradientSizes<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
        let size = self
            .grads
            .get::<CpuBackend, D>(param.id)
            .map_or(0.0, |g| g.abs().max().into_scalar().elem::<f32>());
        self.sizes.push((self.path.join("."), size));
    }
}

#[test]
fn every_layer_gets_gradients() {
    // A deep model that trains like a shallow one would be the symptom of
    // a residual stream that cuts the gradient: every parameter of every
    // layer must receive one.
    let device = Default::default();
    let config = config(3);
    let init = DepthScaledInit::new(&config, 1, 0.02);
    let model = LoadedModel::<Train>::from_weights(&config, &init, &device, DType::F32, |_, _| {})
        .expect("model");
    let tokens = stream(200, 3);
    let windows: Vec<&[TokenId]> = [0, 40].iter().map(|&s| &tokens[s..s + 17]).collect();
    let loss = batch_loss(&model, &windows).expect("loss");
    let grads = GradientsParams::from_grads(loss.backward(), &model.model);
    let mut visitor = GradientSizes {
        grads: &grads,
        path: Vec::new(),
        sizes: Vec::new(),
    };
    model.model.visit(&mut visitor);
    let layers = (0..3)
        .filter(|i| {
            visitor
                .sizes
                .iter()
                .any(|(p, _)| p.contains(&format!(".{i}.")))
        })
        .count();
    assert_eq!(layers, 3, "{:?}", visitor.sizes);
    let without: Vec<_> = visitor.sizes.iter().filter(|(_, s)| *s <= 0.0).collect();
    assert!(without.is_empty(), "no gradient: {without:?}");
}

#[test]
fn accumulated_forwards_train_as_one_batched_forward() {
    let (train_tokens, held_out) = (stream(600, 1), stream(200, 2));
    let batched = temp("batched");
    let accumulated = temp("accumulated");
    let device = Default::default();
    train::<Train>(
        &spec(4, 1, 3),
        &train_tokens,
        &held_out,
        &batched,
        false,
        &device,
        |_| {},
    )
    .expect("batched run");
    train::<Train>(
        &spec(1, 4, 3),
        &train_tokens,
        &held_out,
        &accumulated,
        false,
        &device,
        |_| {},
    )
    .expect("accumulated run");
    // The same windows, the same mean loss: the steps differ only by the
    // order of floating-point sums.
    let gap = max_difference(&weights(&batched), &weights(&accumulated));
    assert!(
        gap < 1e-4,
        "batch 4 and 4 accumulated forwards of 1 differ by {gap}"
    );
    for dir in [batched, accumulated] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn resume_continues_bit_for_bit() {
    let (train_tokens, held_out) = (stream(600, 1), stream(200, 2));
    let straight = temp("straight");
    let resumed = temp("resumed");
    let device = Default::default();
    let run = |dir: &Path, steps: usize, resume: bool| {
        train::<Train>(
            &spec(2, 2, steps),
            &train_tokens,
            &held_out,
            dir,
            resume,
            &device,
            |_| {},
        )
        .expect("run")
    };
    let end = run(&straight, 6, false);
    run(&resumed, 2, false);
    assert!(resumed.join(RESUME_DIR).join("optimizer.bin").is_file());
    let after = run(&resumed, 6, true);
    assert_eq!(after.step, 6);
    assert_eq!(after.tokens_seen, end.tokens_seen);
    assert_eq!(after.held_out_loss, end.held_out_loss);
    assert_eq!(max_difference(&weights(&straight), &weights(&resumed)), 0.0);

    // Without the resume state, --resume says what is missing.
    std::fs::remove_dir_all(resumed.join(RESUME_DIR)).expect("removed");
    let refused = train::<Train>(
        &spec(2, 2, 8),
        &train_tokens,
        &held_out,
        &resumed,
        true,
        &device,
        |_| {},
    )
    .expect_err("no resume state");
    assert!(
        refused.to_string().contains("without --resume"),
        "{refused}"
    );
    for dir in [straight, resumed] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn residual_projections_start_scaled_by_depth() {
    let layers = 8;
    let init = DepthScaledInit::new(&config(layers), 3, 0.02);
    let scaled = 0.02 / (2.0 * layers as f32).sqrt();
    for name in [
        "model.layers.0.self_attn.o_proj.weight",
        "model.layers.7.mlp.down_proj.weight",
    ] {
        assert_eq!(init.std_of(name), scaled, "{name}");
        let values = init.read(name, &[32, 48]).expect("tensor").values;
        let std = (values.iter().map(|v| v * v).sum::<f32>() / values.len() as f32).sqrt();
        assert!(
            (std / scaled - 1.0).abs() < 0.1,
            "{name}: std {std}, expected {scaled}"
        );
    }
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "lm_head.weight",
    ] {
        assert_eq!(init.std_of(name), 0.02, "{name}");
    }
}

#[test]
fn a_recursive_corpus_holds_out_whole_files_per_folder() {
    let root = temp("corpus");
    let write = |path: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(path, "x = 1\n").expect("file");
    };
    for name in [
        "a.py",
        "b.py",
        "c.py",
        "notes.txt",
        "pkg/a.py",
        "pkg/b.py",
        "pkg/tests/t.py",
        "pkg/sub/z.py",
    ] {
        write(name);
    }
    let rel = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|p| p.strip_prefix(&root).expect("inside").display().to_string())
            .collect()
    };
    let top = Corpus::scan(
        &root,
        &Selection {
            ext: "py".into(),
            ..Selection::default()
        },
        2,
    )
    .expect("top level");
    assert_eq!(rel(&top.held_out), ["a.py", "c.py"]);
    assert_eq!(rel(&top.train), ["b.py"]);
    let selection = Selection {
        ext: "py".into(),
        recursive: true,
        exclude_dirs: vec!["tests".into()],
    };
    let all = Corpus::scan(&root, &selection, 2).expect("recursive");
    // The top folder's split is unchanged; each folder holds out its own.
    assert_eq!(
        rel(&all.held_out),
        ["a.py", "c.py", "pkg/a.py", "pkg/sub/z.py"]
    );
    assert_eq!(rel(&all.train), ["b.py", "pkg/b.py"]);
    // Files each alone in its folder are all held out: said so.
    write("solo/x/one.py");
    write("solo/y/two.py");
    let error = Corpus::scan(&root.join("solo"), &selection, 2)
        .expect_err("nothing to train on")
        .to_string();
    assert!(
        error.contains("2 .py files, each alone in its folder"),
        "{error}"
    );
    std::fs::remove_dir_all(root).ok();
}
