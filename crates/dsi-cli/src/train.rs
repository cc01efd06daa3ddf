//! `dsi train`: a byte-level BPE tokenizer and a Llama-family model trained
//! on a folder of text files, written as a Hugging Face checkpoint folder.

use crate::exit::UsageError;
use crate::model_args::parse_device;
use anyhow::Context;
use clap::Args;
use dsi_models::checkpoint::TextTokenizer;
use dsi_models::config::{Family, ModelConfig, RopeScaling};
use dsi_models::device::DeviceSpec;
use dsi_models::train::corpus::{Corpus, Selection, read_texts, token_stream};
use dsi_models::train::{END_OF_TEXT, StoreDtype, TrainSpec, train_on_device, train_tokenizer};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Arguments of `dsi train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Output folder (a Hugging Face checkpoint).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Reuse the tokenizer of this checkpoint folder (a drafter must share the target's).
    #[arg(long, value_name = "DIR")]
    tokenizer: Option<PathBuf>,
    /// Vocabulary size of a newly trained tokenizer.
    #[arg(long, default_value_t = 4096)]
    vocab: usize,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Query heads.
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Key/value heads (grouped-query attention when fewer than --heads).
    #[arg(long, default_value_t = 4)]
    kv_heads: usize,
    /// Width of the SwiGLU MLP.
    #[arg(long, default_value_t = 768)]
    intermediate: usize,
    /// Longest context the model will serve.
    #[arg(long, default_value_t = 1024)]
    context: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Sequences per forward (one batched forward through the model).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Forwards whose gradients add up before each optimizer step (a step
    /// sees --batch x --accumulate sequences).
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    /// Tokens per training sequence.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Seed of the weights and of the sampled windows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate the held-out loss and write a checkpoint every N steps.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Held-out windows per evaluation.
    #[arg(long, default_value_t = 16)]
    eval_windows: usize,
    /// Storage dtype: f16 (half the size) or f32.
    #[arg(long, default_value = "f16", value_parser = ["f16", "f32"])]
    store: String,
    /// Continue from the checkpoint and state in --out.
    #[arg(long)]
    resume: bool,
    /// Backend: cpu, ndarray, wgpu, wgpu:N, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    backend: DeviceSpec,
}

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    for (name, value) in [
        ("steps", args.steps),
        ("batch", args.batch),
        ("accumulate", args.accumulate),
        ("seq-len", args.seq_len),
        ("layers", args.layers),
        ("heads", args.heads),
        ("kv-heads", args.kv_heads),
    ] {
        if value == 0 {
            return Err(UsageError(format!("invalid {name}: 0 (expected at least 1)")).into());
        }
    }
    if !args.hidden.is_multiple_of(args.heads) || !args.heads.is_multiple_of(args.kv_heads) {
        return Err(UsageError(format!(
            "--hidden ({}) must be a multiple of --heads ({}), and --heads of --kv-heads ({})",
            args.hidden, args.heads, args.kv_heads
        ))
        .into());
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(UsageError(format!("invalid lr: {} (expected > 0)", args.lr)).into());
    }
    let corpus = args.corpus.scan()?;
    let train_texts = read_texts(&corpus.train)?;
    let held_out_texts = read_texts(&corpus.held_out)?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let tokenizer_path = args.out.join("tokenizer.json");
    let tokenizer_json = match (&args.tokenizer, args.resume) {
        (Some(dir), _) => std::fs::read_to_string(dir.join("tokenizer.json"))
            .with_context(|| format!("reading the tokenizer of {}", dir.display()))?,
        (None, true) => std::fs::read_to_string(&tokenizer_path)
            .with_context(|| format!("resuming: reading {}", tokenizer_path.display()))?,
        (None, false) => {
            eprintln!(
                "training a byte-level BPE tokenizer of {} entries",
                args.vocab
            );
            train_tokenizer(&train_texts, args.vocab)?
        }
    };
    std::fs::write(&tokenizer_path, &tokenizer_json)
        .with_context(|| format!("writing {}", tokenizer_path.display()))?;
    let tokenizer = TextTokenizer::from_bytes(tokenizer_json.as_bytes())?;
    let eos = tokenizer.token_id(END_OF_TEXT).with_context(|| {
        format!("the tokenizer has no {END_OF_TEXT} token, which separates documents")
    })?;
    let train_tokens = token_stream(&tokenizer, &train_texts, eos)?;
    let held_out = token_stream(&tokenizer, &held_out_texts, eos)?;
    eprintln!(
        "tokens: {} training, {} held out (vocabulary {})",
        train_tokens.len(),
        held_out.len(),
        tokenizer.vocab_size()
    );

    let config = ModelConfig {
        family: Family::Llama,
        vocab_size: tokenizer.vocab_size(),
        hidden_size: args.hidden,
        intermediate_size: args.intermediate,
        num_layers: args.layers,
        num_heads: args.heads,
        num_kv_heads: args.kv_heads,
        head_dim: args.hidden / args.heads,
        norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: RopeScaling::None,
        max_context: args.context,
        sliding_window: None,
        tie_word_embeddings: false,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        eos_token_ids: vec![eos],
        bos_token_id: Some(eos),
    };
    eprintln!("model: {} parameters", config.num_parameters());
    let spec = TrainSpec {
        config,
        steps: args.steps,
        batch: args.batch,
        accumulate: args.accumulate,
        seq_len: args.seq_len,
        lr: args.lr,
        warmup: args.warmup,
        seed: args.seed,
        eval_every: args.eval_every,
        eval_windows: args.eval_windows,
        store: if args.store == "f32" {
            StoreDtype::F32
        } else {
            StoreDtype::F16
        },
    };
    let eval_every = args.eval_every.max(1);
    let bar = ProgressBar::new(args.steps as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let state = train_on_device(
        args.backend,
        &spec,
        &train_tokens,
        &held_out,
        &args.out,
        args.resume,
        |r| {
            bar.set_position(r.step as u64);
            let held = r
                .held_out_loss
                .map_or(String::new(), |l| format!(", held-out {l:.3}"));
            let message = format!(
                "loss {:.3}{held}, lr {:.2e}, {:.0} tokens/s",
                r.loss, r.lr, r.tokens_per_s
            );
            // Without a terminal (a log file), one line per evaluation.
            if bar.is_hidden() && (r.step.is_multiple_of(eval_every) || r.step == r.steps) {
                eprintln!("step {}/{}: {message}", r.step, r.steps);
            }
            bar.set_message(message);
        },
    )?;
    bar.finish();
    println!(
        "trained {} steps ({} tokens) in {:.0} s; held-out loss {}; written to {}",
        state.step,
        state.tokens_seen,
        state.train_seconds,
        state
            .held_out_loss
            .map_or("n/a".to_string(), |l| format!("{l:.4} nats/token")),
        args.out.display()
    );
    Ok(())
}

/// Which files are the corpus and which of them are held out (shared by
/// `dsi train` and `dsi measure loss`, so both split a folder alike).
#[derive(Debug, Args)]
pub(crate) struct CorpusArgs {
    /// Folder of training text.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Extension of the files to read.
    #[arg(long, default_value = "py")]
    ext: String,
    /// Read the folder's subfolders too (default: only files directly inside it).
    #[arg(long)]
    recursive: bool,
    /// With --recursive, skip subfolders of this name at any depth (repeat
    /// or separate with commas: --exclude-dir test,tests).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    exclude_dir: Vec<String>,
    /// In each folder, hold out every N-th file (sorted by name, starting with the first).
    #[arg(long, default_value_t = 10)]
    holdout_every: usize,
}

impl CorpusArgs {
    /// The split, announced on stderr.
    pub(crate) fn scan(&self) -> anyhow::Result<Corpus> {
        let selection = Selection {
            ext: self.ext.clone(),
            recursive: self.recursive,
            exclude_dirs: self.exclude_dir.clone(),
        };
        let corpus = Corpus::scan(&self.data, &selection, self.holdout_every)?;
        eprintln!(
            "corpus: {} training and {} held-out .{} files in {}",
            corpus.train.len(),
            corpus.held_out.len(),
            self.ext,
            self.data.display()
        );
        Ok(corpus)
    }
}
