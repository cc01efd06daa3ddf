//! `dsi bench decode --dtype f32,f16,q8` (and `--dequantized`): one model
//! in several dtypes, or with a GGUF file's block-quantized weights as
//! stored and dequantized, timed in the same run, alternating, best of
//! several rounds, so the ratios between them survive a noisy machine:
//! batch-1 decode and a 128-token prefill per variant, each against the
//! read-bandwidth bound of its own weight bytes, with the memory its
//! weights took when loaded.

use super::decode::{BANDWIDTH_BUFFER, PREFILL_TOKENS, filler, time_decode};
use crate::output::Format;
use dsi_core::cancel::CancelFlag;
use dsi_kernels::bandwidth;
use dsi_models::checkpoint::TensorSource;
use dsi_models::config::ModelConfig;
use dsi_models::device::{Backend, DeviceSpec};
use dsi_models::transformer::{LoadedModel, Numerics, Precision};
use serde::Serialize;
use std::time::Instant;

/// One way to load the model.
pub(super) struct Variant<'a> {
    /// What the report calls it (`f32`, `f32-dequantized`).
    pub(super) label: String,
    pub(super) precision: Precision,
    pub(super) weights: &'a dyn TensorSource,
}

/// What to compare.
pub(super) struct Comparison<'a> {
    pub(super) name: String,
    pub(super) config: ModelConfig,
    pub(super) variants: Vec<Variant<'a>>,
    pub(super) numerics: Numerics,
    pub(super) tokens: usize,
    pub(super) rounds: usize,
    pub(super) format: Format,
}

/// One dtype's figures.
#[derive(Debug, Serialize)]
struct Row {
    dtype: String,
    weight_bytes_per_token: usize,
    /// Anonymous resident memory the process gained while loading this
    /// variant: the weights it owns, not the file's mapped pages (Linux;
    /// `None` elsewhere).
    loaded_resident_mb: Option<f64>,
    decode_tokens_per_s: f64,
    prefill_tokens_per_s: f64,
    read_bound_tokens_per_s: f64,
    read_bandwidth_fraction: f64,
    decode_over_first: f64,
    prefill_over_first: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    backend: String,
    numerics: String,
    rounds: usize,
    decode_tokens: usize,
    read_bandwidth_gb_per_s: f64,
    dtypes: Vec<Row>,
}

/// Best seconds of each measurement over the rounds.
struct Best {
    decode: f64,
    prefill: f64,
}

pub(super) fn run<B: Backend>(
    job: Comparison<'_>,
    spec: DeviceSpec,
    device: &B::Device,
) -> anyhow::Result<()> {
    let mut models = Vec::with_capacity(job.variants.len());
    let mut resident = Vec::with_capacity(job.variants.len());
    for variant in &job.variants {
        let before = resident_bytes();
        let model = LoadedModel::<B>::from_weights(
            &job.config,
            variant.weights,
            device,
            variant.precision,
            |_, _| {},
        )?
        .with_host_threads(spec.host_threads())
        .with_numerics(job.numerics);
        resident.push(
            before
                .zip(resident_bytes())
                .map(|(a, b)| b.saturating_sub(a) as f64 / 1e6),
        );
        models.push(model);
    }
    let prompt = filler(PREFILL_TOKENS, job.config.vocab_size);
    let never = CancelFlag::new();
    let mut best: Vec<Best> = models
        .iter()
        .map(|_| Best {
            decode: f64::INFINITY,
            prefill: f64::INFINITY,
        })
        .collect();
    // The bandwidth is measured in every round too, best of all, so that
    // the bound and the decodes it bounds saw the same machine.
    let mut read = 0f64;
    for _ in 0..job.rounds {
        read = read.max(bandwidth::measure(BANDWIDTH_BUFFER, 2).read);
        for (model, best) in models.iter().zip(&mut best) {
            let mut cache = model.new_cache(PREFILL_TOKENS + job.tokens + 2);
            let start = Instant::now();
            model.forward_host(&prompt, &mut cache, 1, &never)?;
            best.prefill = best.prefill.min(start.elapsed().as_secs_f64());
            best.decode = best.decode.min(time_decode(model, &mut cache, job.tokens)?);
        }
    }
    let rates: Vec<(f64, f64)> = best
        .iter()
        .map(|b| {
            (
                job.tokens as f64 / b.decode,
                PREFILL_TOKENS as f64 / b.prefill,
            )
        })
        .collect();
    let (first_decode, first_prefill) = rates[0];
    let rows = models
        .iter()
        .zip(&job.variants)
        .zip(&rates)
        .zip(resident)
        .map(
            |(((model, variant), &(decode, prefill)), loaded_resident_mb)| {
                let bytes = model.weight_bytes_per_token();
                let bound = read / bytes as f64;
                Row {
                    dtype: variant.label.clone(),
                    weight_bytes_per_token: bytes,
                    loaded_resident_mb,
                    decode_tokens_per_s: decode,
                    prefill_tokens_per_s: prefill,
                    read_bound_tokens_per_s: bound,
                    read_bandwidth_fraction: decode / bound,
                    decode_over_first: decode / first_decode,
                    prefill_over_first: prefill / first_prefill,
                }
            },
        )
        .collect();
    let report = Report {
        model: job.name,
        backend: spec.to_string(),
        numerics: job.numerics.to_string(),
        rounds: job.rounds,
        decode_tokens: job.tokens,
        read_bandwidth_gb_per_s: read / 1e9,
        dtypes: rows,
    };
    match job.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(())
}

fn print_text(report: &Report) {
    println!(
        "{} on {} ({} numerics); best of {} alternating rounds; read bandwidth {:.2} GB/s",
        report.model,
        report.backend,
        report.numerics,
        report.rounds,
        report.read_bandwidth_gb_per_s
    );
    let first = &report.dtypes[0].dtype;
    let width = report
        .dtypes
        .iter()
        .map(|r| r.dtype.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$} {:>9} {:>10} {:>10} {:>9} {:>10} {:>9} {:>10} {:>9}",
        "dtype",
        "loaded MB",
        "MB/token",
        "decode/s",
        "bound/s",
        "of bound",
        format!("vs {first}"),
        "prefill/s",
        format!("vs {first}")
    );
    for row in &report.dtypes {
        let loaded = row
            .loaded_resident_mb
            .map_or_else(|| "-".to_string(), |mb| format!("{mb:.0}"));
        println!(
            "{:<width$} {:>9} {:>10.1} {:>10.2} {:>9.2} {:>9.0}% {:>8.2}x {:>10.1} {:>8.2}x",
            row.dtype,
            loaded,
            row.weight_bytes_per_token as f64 / 1e6,
            row.decode_tokens_per_s,
            row.read_bound_tokens_per_s,
            row.read_bandwidth_fraction * 100.0,
            row.decode_over_first,
            row.prefill_tokens_per_s,
            row.prefill_over_first
        );
    }
}

/// The process's anonymous resident memory (`RssAnon` of Linux's
/// `/proc/self/status`: what it allocated, not mapped files), `None` where
/// it cannot be read.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
