//! `dsi measure loss`: a checkpoint's next-token loss (nats per token) on
//! a corpus's held-out (or training) files, split as `dsi train` splits
//! them and over the same evenly spaced windows as its held-out
//! evaluation, so models trained on different corpora or recipes compare
//! on one set of text.

use crate::bundled;
use crate::measure::{load, open};
use crate::model_args::parse_device;
use crate::output::Format;
use crate::train::CorpusArgs;
use clap::Args;
use dsi_core::TokenId;
use dsi_models::checkpoint::Checkpoint;
use dsi_models::device::{Backend, DeviceSpec, OnBackend, dispatch};
use dsi_models::loss::{even_windows, mean_loss};
use dsi_models::train::END_OF_TEXT;
use dsi_models::train::corpus::{read_texts, token_stream};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `dsi measure loss`.
#[derive(Debug, Args)]
pub(crate) struct LossArgs {
    /// Checkpoint (default: both bundled models).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Measure on the training files instead of the held-out ones.
    #[arg(long)]
    train_split: bool,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Windows, evenly spaced over the split's token stream.
    #[arg(long, default_value_t = 16)]
    windows: usize,
    /// Windows per forward.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Backend and device: cpu, ndarray, wgpu, wgpu:N, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    backend: DeviceSpec,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Serialize)]
struct LossReport {
    model: String,
    loss: f64,
    files: usize,
    split: &'static str,
    windows: usize,
    seq_len: usize,
    stream_tokens: usize,
}

/// Runs `dsi measure loss`.
pub(crate) fn run(args: LossArgs) -> anyhow::Result<()> {
    let models = match &args.model {
        Some(dir) => vec![("model", dir.clone())],
        None => vec![
            ("target", bundled::target()),
            ("drafter", bundled::drafter()),
        ],
    };
    let corpus = args.corpus.scan()?;
    let (split, files) = if args.train_split {
        ("train", &corpus.train)
    } else {
        ("held-out", &corpus.held_out)
    };
    let texts = read_texts(files)?;
    let mut reports = Vec::new();
    let mut tokenized: Option<Tokenized> = None;
    for (what, dir) in models {
        let checkpoint = open(&dir, what)?;
        let eos = checkpoint.tokenizer.token_id(END_OF_TEXT).unwrap_or(
            checkpoint
                .config
                .eos_token_ids
                .first()
                .copied()
                .unwrap_or(0),
        );
        let stream = Tokenized::reuse_or_encode(&mut tokenized, &dir, &checkpoint, &texts, eos)?;
        let loss = dispatch(
            args.backend,
            LossJob {
                checkpoint: &checkpoint,
                stream,
                seq_len: args.seq_len,
                windows: args.windows,
                batch: args.batch,
            },
        )??;
        let report = LossReport {
            model: dir.display().to_string(),
            loss,
            files: files.len(),
            split,
            windows: args.windows,
            seq_len: args.seq_len,
            stream_tokens: stream.len(),
        };
        match args.format {
            Format::Text => println!(
                "{what}: {:.4} nats/token ({} windows of {} tokens over {} {split} files, {} tokens)",
                report.loss, report.windows, report.seq_len, report.files, report.stream_tokens
            ),
            Format::Json => reports.push(report),
        }
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// The split's token stream and what made it.
struct Tokenized {
    tokenizer_file: Vec<u8>,
    eos: TokenId,
    stream: Vec<TokenId>,
}

impl Tokenized {
    /// The split in `checkpoint`'s tokens: `last`'s when its tokenizer file
    /// and end of text are the same (a drafter shares its target's, so the
    /// bundled pair's corpus is tokenized once), else encoded anew.
    fn reuse_or_encode<'a>(
        last: &'a mut Option<Tokenized>,
        dir: &std::path::Path,
        checkpoint: &Checkpoint,
        texts: &[String],
        eos: TokenId,
    ) -> anyhow::Result<&'a [TokenId]> {
        let tokenizer_file = std::fs::read(dir.join("tokenizer.json")).unwrap_or_default();
        let same = last.as_ref().is_some_and(|t| {
            !tokenizer_file.is_empty() && t.tokenizer_file == tokenizer_file && t.eos == eos
        });
        if !same {
            *last = None;
        }
        match last {
            Some(tokenized) => Ok(&tokenized.stream),
            None => {
                let stream = token_stream(&checkpoint.tokenizer, texts, eos)?;
                let tokenized = last.insert(Tokenized {
                    tokenizer_file,
                    eos,
                    stream,
                });
                Ok(&tokenized.stream)
            }
        }
    }
}

struct LossJob<'a> {
    checkpoint: &'a Checkpoint,
    stream: &'a [TokenId],
    seq_len: usize,
    windows: usize,
    batch: usize,
}

impl OnBackend for LossJob<'_> {
    type Output = anyhow::Result<f64>;

    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> Self::Output {
        let model = load::<B>(self.checkpoint, spec, &device, None, "model")?;
        let windows = even_windows(self.stream, self.seq_len, self.windows)?;
        Ok(mean_loss(&model, &windows, self.batch)?)
    }
}
