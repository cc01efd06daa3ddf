//! Losslessness with real models: greedy DSI, SI and non-SI emit identical
//! tokens on random tiny checkpoints, over many prompts, lookaheads and
//! server counts, on every backend (`cpu`, `ndarray`, `wgpu`, `cuda` in a
//! `--features cuda` build) in every dtype it runs by default; seeded
//! coupled sampling, logits processors and log probabilities do too.
//! `DSI_TEST_BACKENDS` chooses the backends (default: all built).
//!
//! The target is a fixture checkpoint (random weights saved by Hugging Face
//! transformers); the drafter is the same model with its logits perturbed at
//! a third of the positions, so drafts are often accepted and often rejected.

use dsi::core::TokenId;
use dsi::core::model::{Feed, ForwardResults, KvModel, KvState, Rows, SeqId};
use dsi::core::rng::keyed_open01;
use dsi::core::sampling::{Decoding, LogitsProcessors, SamplingParams};
use dsi::core::schedule::{Mode, ModeSetting};
use dsi::core::verify::argmax;
use dsi::models::Session;
use dsi::models::checkpoint::{Checkpoint, write_near_ties};
use dsi::models::device::{Backend, DType, DeviceSpec};
use dsi::models::pair::{PairSide, pool_vocab};
use dsi::models::test_backends::runs_on;
use dsi::models::transformer::{LoadedModel, Precision, WeightFormat};
use dsi::sched::{CachedModel, Pool, Request, Role, Stats, WorkerHandle};
use std::path::Path;
use std::sync::Arc;

/// A model whose greedy choice is moved to another token at a keyed third
/// of the positions: a drafter that is right about two times in three.
struct Perturbed<M> {
    inner: M,
}

impl<M: KvState> KvState for Perturbed<M> {
    fn vocab(&self) -> usize {
        self.inner.vocab()
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    fn cached(&self, seq: SeqId) -> usize {
        self.inner.cached(seq)
    }
    fn truncate(&mut self, seq: SeqId, keep: usize) {
        self.inner.truncate(seq, keep);
    }
    fn release(&mut self, seq: SeqId) {
        self.inner.release(seq);
    }
}

impl<M: KvModel> KvModel for Perturbed<M> {
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        let vocab = self.inner.vocab();
        // The position after each feed's first logits row.
        let firsts: Vec<usize> = feeds
            .iter()
            .map(|f| self.inner.cached(f.seq) + f.tokens.len() - f.rows.min(f.tokens.len()) + 1)
            .collect();
        let mut results = self.inner.forward(feeds);
        let moved = |position: usize| keyed_open01(17, position as u64, 0) < 1.0 / 3.0;
        for (rows, first) in results.iter_mut().zip(firsts) {
            match rows {
                Ok(Rows::Logits(logits)) => {
                    for (i, row) in logits.chunks_mut(vocab).enumerate() {
                        if moved(first + i) {
                            let best = argmax(row) as usize;
                            row[(best + 1) % vocab] = row[best] + 5.0;
                        }
                    }
                }
                // Maxima read back on a GPU: the same move.
                Ok(Rows::Argmax(ids)) => {
                    for (i, id) in ids.iter_mut().enumerate() {
                        if moved(first + i) {
                            *id = (*id + 1) % vocab as TokenId;
                        }
                    }
                }
                Err(_) => {}
            }
        }
        results
    }
}

fn fixture(name: &str) -> Checkpoint {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dsi-models/tests/fixtures")
        .join(name);
    Checkpoint::open(&dir).expect("fixture")
}

fn pool<B: Backend>(
    checkpoint: &Checkpoint,
    device: &B::Device,
    precision: Precision,
    targets: usize,
) -> Pool {
    let model = Arc::new(
        LoadedModel::<B>::from_checkpoint(checkpoint, device, precision, |_, _| {}).expect("model"),
    );
    let drafter = Perturbed {
        inner: Session::new(Arc::clone(&model), 128),
    };
    let drafter = WorkerHandle::spawn(
        "drafter",
        Role::Drafter(Box::new(CachedModel::new(drafter))),
    )
    .expect("drafter");
    let targets = (0..targets)
        .map(|i| {
            let session = Session::new(Arc::clone(&model), 128);
            WorkerHandle::spawn(
                format!("target {i}"),
                Role::Target(Box::new(CachedModel::new(session))),
            )
            .expect("target")
        })
        .collect();
    Pool::new(Some(drafter), targets).expect("pool")
}

#[derive(Default)]
struct Totals {
    accepted: u64,
    preempted: u64,
    max_overlap: usize,
    runs: usize,
}

impl Totals {
    fn add(&mut self, stats: &Stats) {
        self.accepted += stats.counters.accepted_tokens;
        self.preempted += stats.counters.jobs_preempted;
        self.max_overlap = self.max_overlap.max(stats.max_concurrent_jobs);
        self.runs += 1;
    }
}

/// Runs every prompt in non-SI, then SI and DSI over `grid` of (k, servers),
/// and checks that every run emits non-SI's tokens.
fn check_lossless<B: Backend>(
    device: B::Device,
    precision: Precision,
    fixtures: &[&str],
    prompts: &[&str],
    grid: &[(usize, usize)],
    decoding: Decoding,
) -> Totals {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut totals = Totals::default();
    for name in fixtures {
        let checkpoint = fixture(name);
        let pool = pool::<B>(&checkpoint, &device, precision, 4);
        for text in prompts {
            let prompt = checkpoint.tokenizer.encode(text).expect("prompt");
            let request = |mode: Mode, k| Request {
                prompt: prompt.clone(),
                mode: mode.into(),
                k,
                max_new_tokens: 24,
                eos: Vec::new(),
                decoding: decoding.clone(),
                targets: None,
            };
            let reference = runtime
                .block_on(pool.generate(request(Mode::NonSi, 1), |_| {}))
                .expect("non-SI");
            assert_eq!(reference.tokens.len(), 24);
            if decoding.logprobs.is_some() {
                let logprobs = reference
                    .logprobs
                    .as_ref()
                    .expect("logprobs were asked for");
                assert_eq!(logprobs.len(), 24);
                assert!(
                    logprobs
                        .iter()
                        .zip(&reference.tokens)
                        .all(|(l, &t)| l.token == t)
                );
            }
            for &(k, servers) in grid {
                for mode in [Mode::Si, Mode::Dsi] {
                    let req = request(mode, k);
                    if mode == Mode::Dsi {
                        // Use the first `servers` targets only.
                        let sub = pool_view(&pool, servers);
                        let g = runtime.block_on(sub.generate(req, |_| {})).expect("DSI");
                        assert_eq!(
                            g.tokens, reference.tokens,
                            "{name} {text:?} DSI k={k} N={servers} {precision:?}"
                        );
                        assert_eq!(
                            g.logprobs, reference.logprobs,
                            "{name} {text:?} DSI k={k} N={servers}: log probabilities"
                        );
                        assert!(
                            g.stats.counters.errors.is_empty(),
                            "{:?}",
                            g.stats.counters.errors
                        );
                        totals.add(&g.stats);
                    } else if servers == grid[0].1 {
                        let g = runtime.block_on(pool.generate(req, |_| {})).expect("SI");
                        assert_eq!(g.tokens, reference.tokens, "{name} {text:?} SI k={k}");
                        assert_eq!(g.logprobs, reference.logprobs, "{name} {text:?} SI k={k}");
                        totals.add(&g.stats);
                    }
                }
            }
        }
    }
    totals
}

/// A pool over the first `servers` targets of `pool`, sharing its workers.
fn pool_view(pool: &Pool, servers: usize) -> Pool {
    let (drafter, targets) = pool.workers();
    Pool::new(drafter.cloned(), targets[..servers].to_vec()).expect("pool")
}

const GRID: &[(usize, usize)] = &[
    (1, 1),
    (1, 2),
    (1, 4),
    (3, 1),
    (3, 2),
    (3, 4),
    (8, 1),
    (8, 2),
    (8, 4),
];

fn assert_speculation_happened(totals: &Totals) {
    assert!(totals.runs > 0);
    assert!(totals.accepted > 0, "drafts were accepted");
    assert!(totals.preempted > 0, "DSI preempted jobs");
    assert!(totals.max_overlap >= 2, "DSI ran jobs concurrently");
}

/// How much of the suite a backend runs: the CPU backend every prompt of
/// the grid; ndarray (the slow reference) a smaller grid; the GPUs (lavapipe
/// runs on the CPU in CI) one prompt and one seed, in every dtype.
struct Scale {
    prompts: &'static [&'static str],
    grid: &'static [(usize, usize)],
    seeds: &'static [u64],
}

const FULL: Scale = Scale {
    prompts: &["Hello world", "def fibonacci(n):", "a"],
    grid: GRID,
    seeds: &[1, 2, 3],
};

const SMALL: Scale = Scale {
    prompts: &["Hello world", "def fibonacci(n):"],
    grid: &[(1, 1), (3, 2), (8, 4)],
    seeds: &[1, 2],
};

const GPU: Scale = Scale {
    prompts: &["def fibonacci(n):"],
    grid: &[(1, 1), (3, 2), (8, 4)],
    seeds: &[1],
};

/// What the suite runs on `spec`: its scale, and f32 plus each dtype the
/// backend runs by default (wgpu: f16 where the device has it; CUDA: bf16
/// and f16). On `cpu`, f32 on the project's kernels, as `dsi` loads it
/// (its f16 and q8 host weights have their own test below). Every backend
/// runs fixed-order kernels (`Numerics::Invariant`, the default), so tokens
/// and log probabilities agree bit for bit on GPUs too.
fn plan<B: Backend>(spec: DeviceSpec, device: &B::Device) -> (Scale, Vec<Precision>) {
    match spec {
        DeviceSpec::Cpu => (FULL, vec![Precision::host(WeightFormat::F32)]),
        DeviceSpec::Ndarray => (SMALL, vec![DType::F32.into()]),
        DeviceSpec::Wgpu(_) | DeviceSpec::Cuda(_) => {
            let dtypes: &[DType] = match spec {
                DeviceSpec::Cuda(_) => &[DType::F32, DType::BF16, DType::F16],
                _ => &[DType::F32, DType::F16],
            };
            let runs = dtypes
                .iter()
                .filter(|&&dtype| B::supports_dtype(device, dtype))
                .map(|&dtype| dtype.into())
                .collect();
            (GPU, runs)
        }
    }
}

/// Greedy DSI, SI and non-SI emit the same tokens (Llama with GQA, Qwen2
/// with biases, a tied Llama-3 with near ties).
fn greedy_agrees<B: Backend>(spec: DeviceSpec, device: B::Device) {
    let (scale, runs) = plan::<B>(spec, &device);
    for precision in runs {
        let totals = check_lossless::<B>(
            device.clone(),
            precision,
            &["llama-gqa", "qwen2-bias", "llama-tied-llama3"],
            scale.prompts,
            scale.grid,
            Decoding::greedy(),
        );
        assert_speculation_happened(&totals);
    }
}

/// Every family the engine loads (Qwen3, Phi-3 with LongRoPE and with a
/// window, StarCoder, Llama with a SentencePiece tokenizer) through the
/// scheduler, each with a drafter of its own family.
fn every_family_agrees<B: Backend>(spec: DeviceSpec, device: B::Device) {
    let (scale, runs) = plan::<B>(spec, &device);
    for precision in runs {
        let totals = check_lossless::<B>(
            device.clone(),
            precision,
            &[
                "qwen3-qknorm",
                "phi3-longrope",
                "phi3-tied-window",
                "starcoder-mqa",
                "llama2-sentencepiece",
            ],
            scale.prompts,
            SMALL.grid,
            Decoding::greedy(),
        );
        assert_speculation_happened(&totals);
    }
}

/// Seeded coupled sampling: DSI and SI emit seeded non-SI's tokens.
fn seeded_sampling_agrees<B: Backend>(spec: DeviceSpec, device: B::Device) {
    let (scale, runs) = plan::<B>(spec, &device);
    for precision in runs {
        for &seed in scale.seeds {
            let params = SamplingParams {
                temperature: 0.8,
                top_k: Some(40),
                top_p: Some(0.95),
                seed,
            };
            let totals = check_lossless::<B>(
                device.clone(),
                precision,
                &["llama-gqa"],
                scale.prompts,
                scale.grid,
                Decoding::new(params, false).expect("decoding"),
            );
            assert!(totals.runs > 0);
        }
    }
}

/// Penalties, biases and `min_tokens` (applied by drafter and target to
/// each row against its own prefix) and log probabilities: DSI and SI emit
/// non-SI's tokens and report its log probabilities, bit for bit, greedy
/// and seeded.
fn processors_and_logprobs_agree<B: Backend>(spec: DeviceSpec, device: B::Device) {
    let (scale, runs) = plan::<B>(spec, &device);
    let processors = LogitsProcessors {
        presence_penalty: 0.4,
        frequency_penalty: 0.3,
        repetition_penalty: 1.3,
        logit_bias: vec![(5, 4.0), (7, -100.0)],
        min_tokens: 6,
        eos: vec![0, 1, 2],
        ..LogitsProcessors::none()
    };
    let sampled = SamplingParams {
        temperature: 0.9,
        top_k: None,
        top_p: Some(0.95),
        seed: 7,
    };
    for precision in runs {
        for params in [SamplingParams::greedy(), sampled] {
            let decoding = Decoding::new(params, false)
                .and_then(|d| d.with_processors(processors.clone(), 320))
                .and_then(|d| d.with_logprobs(5))
                .expect("decoding");
            let totals = check_lossless::<B>(
                device.clone(),
                precision,
                &["llama-gqa"],
                scale.prompts,
                scale.grid,
                decoding,
            );
            assert!(
                totals.accepted > 0 && totals.preempted > 0,
                "speculation ran"
            );
        }
    }
}

/// The suite on one backend, in every dtype it runs by default
/// (`DSI_TEST_BACKENDS` chooses which run: `cuda` in a `--features cuda`
/// build on a GPU).
macro_rules! lossless_suite {
    ($name:ident, $backend:ty, $spec:expr, $device:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn greedy_dsi_si_and_nonsi_agree() {
                if runs_on($spec) {
                    greedy_agrees::<$backend>($spec, $device);
                }
            }

            #[test]
            fn greedy_dsi_si_and_nonsi_agree_for_every_family() {
                if runs_on($spec) {
                    every_family_agrees::<$backend>($spec, $device);
                }
            }

            #[test]
            fn seeded_coupled_sampling_agrees_across_modes() {
                if runs_on($spec) {
                    seeded_sampling_agrees::<$backend>($spec, $device);
                }
            }

            #[test]
            fn processors_and_logprobs_agree_across_modes() {
                if runs_on($spec) {
                    processors_and_logprobs_agree::<$backend>($spec, $device);
                }
            }
        }
    };
}

lossless_suite!(
    cpu,
    dsi::models::device::CpuBackend,
    DeviceSpec::Cpu,
    Default::default()
);
lossless_suite!(
    ndarray,
    dsi::models::device::NdarrayBackend,
    DeviceSpec::Ndarray,
    Default::default()
);
#[cfg(feature = "wgpu")]
lossless_suite!(
    wgpu,
    dsi::models::device::WgpuBackend,
    DeviceSpec::Wgpu(None),
    Default::default()
);
#[cfg(feature = "cuda")]
lossless_suite!(
    cuda,
    dsi::models::device::CudaBackend,
    DeviceSpec::Cuda(0),
    burn::backend::cuda::CudaDevice::new(0)
);

/// A Qwen2-style pair whose embeddings are padded to different sizes
/// (target 384 rows, drafter 328, tokenizer 320 ids): they sample and
/// verify on the tokenizer's ids, and DSI and SI emit non-SI's tokens.
#[test]
fn a_pair_with_differently_padded_vocabularies_is_lossless_on_cpu() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    type B = dsi::models::device::CpuBackend;
    let (target, drafter) = (
        fixture("qwen2-padded-target"),
        fixture("qwen2-padded-drafter"),
    );
    let vocab =
        pool_vocab(PairSide::from(&target), Some(PairSide::from(&drafter))).expect("one tokenizer");
    assert_eq!(
        (target.config.vocab_size, drafter.config.vocab_size, vocab),
        (384, 328, 320)
    );
    assert_eq!(
        pool_vocab(PairSide::from(&target), None).expect("alone"),
        320,
        "non-SI alone samples the tokenizer's ids too"
    );
    let load = |c: &Checkpoint| {
        Arc::new(
            LoadedModel::<B>::from_checkpoint(
                c,
                &Default::default(),
                Precision::host(WeightFormat::F32),
                |_, _| {},
            )
            .expect("model"),
        )
    };
    let (target_model, drafter_model) = (load(&target), load(&drafter));
    let session = |m: &Arc<LoadedModel<B>>| Session::new(Arc::clone(m), 128).with_vocab(vocab);
    let drafter = WorkerHandle::spawn(
        "drafter",
        Role::Drafter(Box::new(CachedModel::new(session(&drafter_model)))),
    )
    .expect("drafter");
    let targets = (0..3)
        .map(|i| {
            WorkerHandle::spawn(
                format!("target {i}"),
                Role::Target(Box::new(CachedModel::new(session(&target_model)))),
            )
            .expect("target")
        })
        .collect();
    let pool = Pool::new(Some(drafter), targets).expect("pool");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut totals = Totals::default();
    for text in ["def fibonacci(n):", "class Stack:", "a"] {
        let request = |mode: Mode, k| Request {
            prompt: target.tokenizer.encode(text).expect("prompt"),
            mode: mode.into(),
            k,
            max_new_tokens: 24,
            eos: Vec::new(),
            decoding: Decoding::greedy(),
            targets: None,
        };
        let reference = runtime
            .block_on(pool.generate(request(Mode::NonSi, 1), |_| {}))
            .expect("non-SI");
        for mode in [Mode::Si, Mode::Dsi] {
            for k in [2, 5] {
                let run = runtime
                    .block_on(pool.generate(request(mode, k), |_| {}))
                    .expect("speculation");
                assert_eq!(run.tokens, reference.tokens, "{text:?} {mode:?} k={k}");
                assert!(run.stats.counters.errors.is_empty());
                totals.add(&run.stats);
            }
        }
    }
    assert!(totals.accepted > 0, "drafts were accepted");
    assert!(totals.preempted > 0, "DSI preempted jobs");
}

/// Drafters whose tokenizer maps a token to another id, or whose
/// tokenizer has tokens past an embedding, are refused naming the
/// difference.
#[test]
fn a_drafter_with_another_tokenizer_is_refused_naming_the_first_difference() {
    let (target, bundled) = (
        fixture("qwen2-padded-target"),
        Checkpoint::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pystd/drafter"))
            .expect("bundled drafter"),
    );
    let err = pool_vocab(PairSide::from(&target), Some(PairSide::from(&bundled)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizers differ") && err.contains(" is \""),
        "{err}"
    );
    let spm = fixture("llama2-sentencepiece");
    let err = pool_vocab(PairSide::from(&spm), Some(PairSide::from(&target)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizers differ"), "{err}");
}

/// `--dtype f16` and `--dtype q8` on the cpu backend: half-precision and
/// 8-bit projection weights, widened in registers.
#[test]
fn greedy_dsi_si_and_nonsi_agree_on_cpu_with_f16_and_q8_weights() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    for format in [WeightFormat::F16, WeightFormat::Q8] {
        let totals = check_lossless::<dsi::models::device::CpuBackend>(
            Default::default(),
            Precision::host(format),
            &["llama-gqa", "llama-tied-llama3"],
            &["Hello world", "a"],
            GRID,
            Decoding::greedy(),
        );
        assert_speculation_happened(&totals);
    }
}

/// GGUF files with their block-quantized weights kept as stored (a Q4_0
/// Llama, and a Qwen2 mixing Q4_K, Q5_K and Q6_K as Q4_K_M files do): the
/// kernels' rows are batch-invariant, so greedy DSI, SI and non-SI agree.
#[test]
fn greedy_dsi_si_and_nonsi_agree_on_cpu_with_gguf_quantized_weights() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let totals = check_lossless::<dsi::models::device::CpuBackend>(
        Default::default(),
        Precision::host(WeightFormat::F32),
        &["gguf/llama-q4_0.gguf", "gguf/qwen2-q4_k.gguf"],
        &["Hello world", "def fibonacci(n):"],
        SMALL.grid,
        Decoding::greedy(),
    );
    assert_speculation_happened(&totals);
}

/// The processors change what is generated (the test above is not vacuous).
#[test]
fn processors_change_the_output_on_cpu() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let checkpoint = fixture("llama-gqa");
    let pool = pool::<dsi::models::device::CpuBackend>(
        &checkpoint,
        &Default::default(),
        Precision::host(WeightFormat::F32),
        1,
    );
    let prompt = checkpoint.tokenizer.encode("Hello world").expect("prompt");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let run = |decoding: Decoding| {
        let request = Request {
            prompt: prompt.clone(),
            mode: Mode::NonSi.into(),
            k: 1,
            max_new_tokens: 24,
            eos: Vec::new(),
            decoding,
            targets: None,
        };
        runtime
            .block_on(pool.generate(request, |_| {}))
            .expect("generation")
            .tokens
    };
    let plain = run(Decoding::greedy());
    let banned = plain[0];
    let biased = run(Decoding::greedy()
        .with_processors(
            LogitsProcessors {
                logit_bias: vec![(banned, -100.0)],
                ..LogitsProcessors::none()
            },
            320,
        )
        .expect("bias"));
    assert!(!biased.contains(&banned), "a -100 bias bans the token");
    let penalized = run(Decoding::greedy()
        .with_processors(
            LogitsProcessors {
                frequency_penalty: 2.0,
                ..LogitsProcessors::none()
            },
            320,
        )
        .expect("penalty"));
    assert_ne!(
        penalized, plain,
        "a frequency penalty of 2 changes greedy output"
    );
    let distinct = |t: &[TokenId]| t.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(
        distinct(&penalized) >= distinct(&plain),
        "{penalized:?} vs {plain:?}"
    );
}

/// On a checkpoint whose every greedy choice is a near-tie (see
/// `dsi-models/tests/near_ties.rs`: the backend's own kernels change some
/// of its tokens with the cut of a forward), concurrent requests in every
/// mode and lookahead, batched together on the workers, each emit the
/// tokens of their prompt alone in non-SI.
#[test]
fn near_ties_keep_their_tokens_in_every_mode_under_load_on_cpu() {
    if !runs_on(DeviceSpec::Cpu) {
        return;
    }
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/dsi-models/tests/fixtures/llama-gqa");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("near-ties-lossless");
    let checkpoint = write_near_ties(&fixture, &dir).expect("near-tie checkpoint");
    let pool = Arc::new(pool::<dsi::models::device::CpuBackend>(
        &checkpoint,
        &Default::default(),
        Precision::host(WeightFormat::F32),
        2,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let prompts: Vec<Vec<TokenId>> = (0..8u32)
        .map(|p| (0..3 + p).map(|i| (p * 29 + i * 7 + 5) % 96).collect())
        .collect();
    let request = |prompt: &Vec<TokenId>, mode: Mode, k| Request {
        prompt: prompt.clone(),
        mode: ModeSetting::from(mode),
        k,
        max_new_tokens: 20,
        eos: Vec::new(),
        decoding: Decoding::greedy(),
        targets: None,
    };
    let alone: Vec<Vec<TokenId>> = prompts
        .iter()
        .map(|p| {
            runtime
                .block_on(pool.generate(request(p, Mode::NonSi, 1), |_| {}))
                .expect("alone")
                .tokens
        })
        .collect();
    let runs: Vec<(usize, Mode, usize)> = (0..24)
        .map(|i| (i % 8, [Mode::Dsi, Mode::Si, Mode::NonSi][i % 3], 1 + i % 4))
        .collect();
    let together = runtime.block_on(async {
        let tasks: Vec<_> = runs
            .iter()
            .map(|&(p, mode, k)| {
                let (pool, request) = (Arc::clone(&pool), request(&prompts[p], mode, k));
                tokio::spawn(async move { pool.generate(request, |_| {}).await.expect("run") })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("task"));
        }
        out
    });
    for (&(p, mode, k), g) in runs.iter().zip(&together) {
        assert_eq!(
            g.tokens, alone[p],
            "prompt {p} in {mode} with k={k} under load"
        );
    }
    let (drafter, targets) = pool.workers();
    let batched = drafter
        .into_iter()
        .chain(targets)
        .filter_map(|w| w.forwards())
        .any(|f| {
            f.members
                .buckets()
                .next()
                .is_some_and(|(_, alone)| alone < f.members.count())
        });
    assert!(batched, "some forwards carried several requests");
}
