//! `dsi random-checkpoint`: writes a Hugging Face checkpoint folder of a
//! released model's shape with random weights, so serving benchmarks can
//! load a real-size model from disk the way a user would, without a
//! download. The tokenizer is the bundled pair's, padded to the shape's
//! vocabulary (extra ids decode as `<|id:N|>`).

use crate::bundled;
use crate::exit::UsageError;
use crate::random_shape::{RANDOM_WEIGHTS, RandomShape};
use anyhow::Context;
use clap::{Args, ValueEnum};
use dsi_models::checkpoint::{RandomWeights, StoreDtype, padded_tokenizer_json, write_random};
use std::path::PathBuf;

/// How the weights are stored.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Storage {
    F32,
    F16,
    Bf16,
}

/// Arguments of `dsi random-checkpoint`.
#[derive(Debug, Args)]
pub(crate) struct RandomCheckpointArgs {
    /// The shape to write.
    #[arg(long, value_enum)]
    shape: RandomShape,
    /// Folder to write (created if missing; its checkpoint files are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Storage dtype of the weights.
    #[arg(long, value_enum, default_value = "bf16")]
    dtype: Storage,
    /// Keep only the first N decoder layers (a cheap drafter with the
    /// shape's vocabulary and width).
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Seed of the weights (the same seed and shape give the same model
    /// `dsi bench decode --random` benchmarks).
    #[arg(long, default_value_t = RANDOM_WEIGHTS.seed)]
    seed: u64,
}

pub(crate) fn run(args: RandomCheckpointArgs) -> anyhow::Result<()> {
    let mut config = args.shape.config();
    if let Some(layers) = args.layers {
        if layers == 0 || layers > config.num_layers {
            return Err(UsageError(format!(
                "invalid --layers {layers}: the {} has {} layers (expected 1 to {})",
                args.shape.name(),
                config.num_layers,
                config.num_layers
            ))
            .into());
        }
        config.num_layers = layers;
    }
    let tokenizer_path = bundled::target().join("tokenizer.json");
    let tokenizer = std::fs::read(&tokenizer_path).with_context(|| {
        format!(
            "reading the bundled tokenizer {} (set DSI_BUNDLED to the models/pystd folder)",
            tokenizer_path.display()
        )
    })?;
    let padded = padded_tokenizer_json(&tokenizer, config.vocab_size)?;
    let store = match args.dtype {
        Storage::F32 => StoreDtype::F32,
        Storage::F16 => StoreDtype::F16,
        Storage::Bf16 => StoreDtype::Bf16,
    };
    let weights = RandomWeights {
        seed: args.seed,
        ..RANDOM_WEIGHTS
    };
    write_random(&args.out, &config, &weights, store)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let tokenizer_out = args.out.join("tokenizer.json");
    std::fs::write(&tokenizer_out, padded)
        .with_context(|| format!("writing {}", tokenizer_out.display()))?;
    println!(
        "wrote {}: {}, {} decoder layer{}, {:.2} B parameters, {} weights",
        args.out.display(),
        args.shape.name(),
        config.num_layers,
        if config.num_layers == 1 { "" } else { "s" },
        config.num_parameters() as f64 / 1e9,
        format!("{:?}", args.dtype).to_lowercase()
    );
    Ok(())
}
