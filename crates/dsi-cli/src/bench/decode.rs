//! `dsi bench decode`: batch-1 decode tokens/s, prefill tokens/s over 128
//! tokens, and the fraction of the memory-bandwidth bound the decode reaches.
//!
//! Decode of one token must read every weight once, so
//! `weight bytes per token x tokens/s` cannot exceed the machine's memory
//! bandwidth; the ratio says how close the engine gets. The headline ratio
//! uses the copy bandwidth (bytes copied per second); the read-only ratio is
//! printed beside it.

use crate::exit::UsageError;
use crate::model_args::{advance, load_bar, parse_device, parse_dtype};
use crate::output::Format;
use crate::random_shape::{RANDOM_WEIGHTS, RandomShape};
use anyhow::Context;
use clap::Args;
use dsi_core::TokenId;
use dsi_kernels::bandwidth;
use dsi_models::KvCache;
use dsi_models::cache::SegmentPolicy;
use dsi_models::checkpoint::{Checkpoint, Dequantized, HostTensor, TensorSource};
use dsi_models::config::ModelConfig;
use dsi_models::device::{Backend, DeviceSpec, OnBackend, RunDtype, dispatch};
use dsi_models::transformer::{BatchMember, LoadedModel, Numerics};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub(super) const PREFILL_TOKENS: usize = 128;
/// The prompt `--prefill-chunks` feeds in chunks.
const CHUNKED_PROMPT_TOKENS: usize = 512;
pub(super) const BANDWIDTH_BUFFER: usize = 512 << 20;

/// Arguments of `dsi bench decode`.
#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Checkpoint to benchmark: a Hugging Face folder or a GGUF file.
    #[arg(
        long,
        value_name = "DIR_OR_GGUF",
        required_unless_present = "random",
        conflicts_with = "random"
    )]
    model: Option<PathBuf>,
    /// Benchmark random weights of a known shape instead of a checkpoint;
    /// several (`smollm-135m,starcoder-168m,qwen3-0.6b`) run one after
    /// another in this process, one report each (with `--format json`,
    /// one object per line).
    #[arg(long, value_enum, value_delimiter = ',')]
    random: Vec<RandomShape>,
    /// Backend and device: cpu, wgpu, wgpu:N, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    backend: DeviceSpec,
    /// Run dtype: f32, f16, bf16, or q8 (8-bit projection weights, cpu
    /// only). Several (`f32,f16,q8`) compare them in one run: decode and
    /// prefill per dtype, alternating, best of `--rounds`.
    #[arg(long, value_parser = parse_dtype, value_delimiter = ',')]
    dtype: Vec<RunDtype>,
    /// Also run each dtype with the checkpoint's block-quantized weights
    /// (a GGUF file's) dequantized at load, alternating with them kept as
    /// stored: the speed and memory quantized weights save.
    #[arg(long)]
    dequantized: bool,
    /// Rounds when comparing dtypes (the best of each is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Decode steps to time (after a warm-up step).
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Positions in the cache when decode starts (default: the 128-token
    /// prefill); decode then also runs over one preallocated contiguous
    /// cache (the layout before caches grew by segments), alternating, and
    /// the ratio is reported.
    #[arg(long)]
    context: Option<usize>,
    /// Also prefill a 512-token prompt (at most the context) in chunks of each of these sizes
    /// (e.g. `64,128,256,512`): tokens/s and the longest forward, the time
    /// other requests' jobs wait behind one chunk (`--prefill-chunk`).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    prefill_chunks: Vec<usize>,
    /// Also decode this many sequences at once, one batched forward per
    /// step (`forward_batch`), each from its own copy of the cache: reports
    /// the tokens/s of all of them together and the ratio to batch 1.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// `invariant` (fixed-order kernels on the cpu backend) or `fast` (the
    /// backend's own), as in `dsi generate --numerics`.
    #[arg(long, default_value = "invariant")]
    numerics: Numerics,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// What the benchmark reports.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    backend: String,
    dtype: String,
    numerics: String,
    parameters: usize,
    decode_tokens_per_s: f64,
    decode_ms_per_token: f64,
    prefill_tokens_per_s: f64,
    prefill_tokens: usize,
    weight_bytes_per_token: usize,
    copy_bandwidth_gb_per_s: f64,
    bandwidth_bound_tokens_per_s: f64,
    bandwidth_fraction: f64,
    read_bandwidth_gb_per_s: f64,
    read_bound_tokens_per_s: f64,
    read_bandwidth_fraction: f64,
    /// Positions cached when the timed decode starts.
    context: usize,
    /// KV-cache segments at that context.
    cache_segments: usize,
    /// With `--context`: decode over one contiguous preallocated cache.
    contiguous_decode_tokens_per_s: Option<f64>,
    /// `decode_tokens_per_s` over `contiguous_decode_tokens_per_s`.
    segmented_over_contiguous: Option<f64>,
    /// With `--batch B > 1`: sequences decoded together.
    batch: usize,
    /// Their tokens per second, all sequences together.
    batch_decode_tokens_per_s: Option<f64>,
    /// `batch_decode_tokens_per_s` over `decode_tokens_per_s`.
    batch_over_single: Option<f64>,
    /// With `--prefill-chunks`: one entry per chunk size.
    chunked_prefill: Vec<ChunkedPrefill>,
}

/// A prefill of up to 512 tokens fed in chunks of one size.
#[derive(Debug, Serialize)]
struct ChunkedPrefill {
    chunk: usize,
    prompt_tokens: usize,
    tokens_per_s: f64,
    longest_forward_ms: f64,
}

pub(crate) fn run(args: DecodeArgs) -> anyhow::Result<()> {
    if args.tokens == 0 {
        return Err(UsageError("invalid tokens: 0 (expected at least 1)".into()).into());
    }
    if args.batch == 0 {
        return Err(UsageError("invalid batch: 0 (expected at least 1)".into()).into());
    }
    if args.prefill_chunks.contains(&0) {
        return Err(
            UsageError("invalid prefill-chunks: 0 (expected sizes of at least 1)".into()).into(),
        );
    }
    let sources = match (&args.model, args.random.as_slice()) {
        (Some(dir), _) => vec![Source::Checkpoint(Box::new(
            Checkpoint::open(dir)
                .with_context(|| format!("loading the model in {}", dir.display()))?,
        ))],
        (None, []) => return Err(UsageError("give --model DIR or --random SHAPE".into()).into()),
        (None, shapes) => shapes.iter().map(|&shape| Source::Random(shape)).collect(),
    };
    if (args.dtype.len() > 1 || args.dequantized)
        && (args.context.is_some() || args.batch > 1 || !args.prefill_chunks.is_empty())
    {
        return Err(UsageError(
            "several --dtype values or --dequantized compare decode and prefill only: drop --context, --batch and --prefill-chunks".into(),
        )
        .into());
    }
    if args.rounds == 0 {
        return Err(UsageError("invalid rounds: 0 (expected at least 1)".into()).into());
    }
    let spec = args.backend;
    let args = Arc::new(args);
    for source in sources {
        dispatch(
            spec,
            Job {
                args: Arc::clone(&args),
                source,
            },
        )??;
    }
    Ok(())
}

enum Source {
    Checkpoint(Box<Checkpoint>),
    Random(RandomShape),
}

struct Job {
    args: Arc<DecodeArgs>,
    source: Source,
}

impl OnBackend for Job {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, spec: DeviceSpec, device: B::Device) -> anyhow::Result<()> {
        let Job { args, source } = self;
        let start_context = args.context.unwrap_or(PREFILL_TOKENS).max(PREFILL_TOKENS);
        let context = start_context + args.tokens + 2;
        let (config, weights, name): (ModelConfig, &dyn TensorSource, String) = match &source {
            Source::Checkpoint(c) => (c.config.clone(), &c.weights, c.path.display().to_string()),
            Source::Random(shape) => {
                // Random weights have no trained context: stretch the shape's
                // to what the run asks.
                let mut config = shape.config();
                config.max_context = config.max_context.max(context);
                (config, &RANDOM_WEIGHTS, shape.name().into())
            }
        };
        if args.dtype.len() > 1 || args.dequantized {
            let dtypes = if args.dtype.is_empty() {
                vec![RunDtype::default_for::<B>(spec, &device)]
            } else {
                args.dtype.clone()
            };
            let dequantized = Dequantized(weights);
            let mut variants = Vec::new();
            for dtype in dtypes {
                let precision = dtype.precision(spec, args.numerics)?;
                let label = format!("{dtype:?}").to_lowercase();
                if args.dequantized {
                    variants.push(super::dtypes::Variant {
                        label: format!("{label}-dequantized"),
                        precision,
                        weights: &dequantized,
                    });
                }
                variants.push(super::dtypes::Variant {
                    label,
                    precision,
                    weights,
                });
            }
            let comparison = super::dtypes::Comparison {
                name,
                config,
                variants,
                numerics: args.numerics,
                tokens: args.tokens,
                rounds: args.rounds,
                format: args.format,
            };
            return super::dtypes::run::<B>(comparison, spec, &device);
        }
        let dtype = args
            .dtype
            .first()
            .copied()
            .unwrap_or_else(|| RunDtype::default_for::<B>(spec, &device));
        let precision = dtype.precision(spec, args.numerics)?;
        let bar = load_bar("model");
        let model =
            LoadedModel::<B>::from_weights(&config, weights, &device, precision, advance(&bar))?
                .with_host_threads(spec.host_threads())
                .with_numerics(args.numerics);
        bar.finish_and_clear();

        let vocab = config.vocab_size as TokenId;
        let prompt = filler(PREFILL_TOKENS, config.vocab_size);
        if context > config.max_context {
            return Err(UsageError(format!(
                "--context {start_context} and --tokens {} need a context of {context}, the model has {}",
                args.tokens, config.max_context
            ))
            .into());
        }

        // Prefill: one forward over 128 tokens (after one untimed warm-up),
        // with the LM head on the last row only, as generation runs it.
        let never = dsi_core::cancel::CancelFlag::new();
        let mut cache = model.new_cache(context);
        model.forward_host(&prompt, &mut cache, 1, &never)?;
        cache.truncate(0);
        let start = Instant::now();
        model.forward_host(&prompt, &mut cache, 1, &never)?;
        let prefill_secs = start.elapsed().as_secs_f64();

        // Decode: greedy steps from `start_context` cached positions, each
        // reading its logits back as real decoding does.
        let fill = |cache: &mut KvCache<B>| -> anyhow::Result<()> {
            cache.truncate(0);
            for chunk in filler(start_context, config.vocab_size).chunks(512) {
                model.forward_host(chunk, cache, 0, &never)?;
            }
            Ok(())
        };
        let decode = |cache: &mut KvCache<B>| -> anyhow::Result<f64> {
            cache.truncate(start_context);
            time_decode(&model, cache, args.tokens)
        };
        fill(&mut cache)?;
        let mut decode_secs = decode(&mut cache)?;
        let cache_segments = cache.segments();
        let mut contiguous_secs = None;
        if args.context.is_some() {
            // The layout before caches grew: one segment for the whole context.
            let mut contiguous = model.new_cache_with(context, SegmentPolicy::fixed(context));
            fill(&mut contiguous)?;
            let mut best = decode(&mut contiguous)?;
            // Alternate, best of two each, so drift does not favour either.
            decode_secs = decode_secs.min(decode(&mut cache)?);
            best = best.min(decode(&mut contiguous)?);
            contiguous_secs = Some(best);
        }

        let batch_secs = if args.batch > 1 {
            let mut caches: Vec<KvCache<B>> = (0..args.batch)
                .map(|_| {
                    let mut copy = cache.clone();
                    copy.truncate(start_context);
                    copy
                })
                .collect();
            let mut tokens: Vec<TokenId> = (0..args.batch as TokenId).map(|b| b % vocab).collect();
            // One warm-up step, then the timed ones.
            let mut step = |tokens: &mut Vec<TokenId>| -> anyhow::Result<()> {
                let members = caches
                    .iter_mut()
                    .zip(tokens.iter())
                    .map(|(cache, token)| BatchMember {
                        tokens: std::slice::from_ref(token),
                        cache,
                        rows: 1,
                        cancel: &never,
                    })
                    .collect();
                let mut next = Vec::with_capacity(tokens.len());
                for logits in model.forward_batch(members) {
                    let row = HostTensor::from_tensor(logits?)?;
                    next.push(dsi_core::verify::argmax(&row.values));
                }
                *tokens = next;
                Ok(())
            };
            step(&mut tokens)?;
            let start = Instant::now();
            for _ in 0..args.tokens {
                step(&mut tokens)?;
            }
            Some(start.elapsed().as_secs_f64())
        } else {
            None
        };

        let mut chunked_prefill = Vec::new();
        if !args.prefill_chunks.is_empty() {
            let length = CHUNKED_PROMPT_TOKENS.min(config.max_context);
            let prompt: Vec<TokenId> = (0..length as TokenId)
                .map(|i| (i * 11 + 5) % vocab)
                .collect();
            let mut cache = model.new_cache(length);
            for &chunk in &args.prefill_chunks {
                cache.truncate(0);
                let mut longest = 0f64;
                let start = Instant::now();
                for (i, piece) in prompt.chunks(chunk).enumerate() {
                    // The LM head on the prompt's last row only, as the
                    // scheduler's chunked prefill runs it.
                    let rows = usize::from((i + 1) * chunk >= length);
                    let forward = Instant::now();
                    model.forward_host(piece, &mut cache, rows, &never)?;
                    longest = longest.max(forward.elapsed().as_secs_f64());
                }
                chunked_prefill.push(ChunkedPrefill {
                    chunk,
                    prompt_tokens: length,
                    tokens_per_s: length as f64 / start.elapsed().as_secs_f64(),
                    longest_forward_ms: longest * 1e3,
                });
            }
        }

        let weight_bytes = model.weight_bytes_per_token();
        let bandwidth = bandwidth::measure(BANDWIDTH_BUFFER, 5);
        let decode_tps = args.tokens as f64 / decode_secs;
        let bound = bandwidth.copy / weight_bytes as f64;
        let read_bound = bandwidth.read / weight_bytes as f64;
        let report = Report {
            model: name,
            backend: spec.to_string(),
            dtype: format!("{dtype:?}").to_lowercase(),
            numerics: args.numerics.to_string(),
            parameters: config.num_parameters(),
            decode_tokens_per_s: decode_tps,
            decode_ms_per_token: 1e3 / decode_tps,
            prefill_tokens_per_s: PREFILL_TOKENS as f64 / prefill_secs,
            prefill_tokens: PREFILL_TOKENS,
            weight_bytes_per_token: weight_bytes,
            copy_bandwidth_gb_per_s: bandwidth.copy / 1e9,
            bandwidth_bound_tokens_per_s: bound,
            bandwidth_fraction: decode_tps / bound,
            read_bandwidth_gb_per_s: bandwidth.read / 1e9,
            read_bound_tokens_per_s: read_bound,
            read_bandwidth_fraction: decode_tps / read_bound,
            context: start_context,
            cache_segments,
            contiguous_decode_tokens_per_s: contiguous_secs.map(|s| args.tokens as f64 / s),
            segmented_over_contiguous: contiguous_secs.map(|s| s / decode_secs),
            batch: args.batch,
            batch_decode_tokens_per_s: batch_secs.map(|s| (args.batch * args.tokens) as f64 / s),
            batch_over_single: batch_secs.map(|s| args.batch as f64 * decode_secs / s),
            chunked_prefill,
        };
        match args.format {
            // Several shapes in one run: one compact report per line.
            Format::Json if args.random.len() > 1 => {
                println!("{}", serde_json::to_string(&report)?)
            }
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => {
                println!(
                    "{} on {} ({}, {} numerics), {} parameters",
                    report.model, report.backend, report.dtype, report.numerics, report.parameters
                );
                println!(
                    "decode:  {:.2} tokens/s ({:.1} ms/token), batch 1, from {} cached positions ({} cache segments)",
                    report.decode_tokens_per_s,
                    report.decode_ms_per_token,
                    report.context,
                    report.cache_segments
                );
                if let (Some(tps), Some(ratio)) = (
                    report.contiguous_decode_tokens_per_s,
                    report.segmented_over_contiguous,
                ) {
                    println!(
                        "         {tps:.2} tokens/s over one preallocated contiguous cache: segmented/contiguous {ratio:.3}"
                    );
                }
                if let (Some(tps), Some(ratio)) =
                    (report.batch_decode_tokens_per_s, report.batch_over_single)
                {
                    println!(
                        "         {tps:.2} tokens/s for {} sequences decoded together: {ratio:.2}x batch 1",
                        report.batch
                    );
                }
                println!(
                    "prefill: {:.1} tokens/s over {} tokens",
                    report.prefill_tokens_per_s, PREFILL_TOKENS
                );
                for c in &report.chunked_prefill {
                    println!(
                        "         {:.1} tokens/s over {} tokens in chunks of {}; longest forward {:.0} ms",
                        c.tokens_per_s, c.prompt_tokens, c.chunk, c.longest_forward_ms
                    );
                }
                println!(
                    "bandwidth: {:.2} GB/s copy; {:.1} MB of weights per token bound decode at {:.2} tokens/s; reached {:.0}%",
                    report.copy_bandwidth_gb_per_s,
                    report.weight_bytes_per_token as f64 / 1e6,
                    report.bandwidth_bound_tokens_per_s,
                    report.bandwidth_fraction * 100.0
                );
                println!(
                    "           {:.2} GB/s read-only: bound {:.2} tokens/s; reached {:.0}%",
                    report.read_bandwidth_gb_per_s,
                    report.read_bound_tokens_per_s,
                    report.read_bandwidth_fraction * 100.0
                );
            }
        }
        Ok(())
    }
}

/// `n` token ids of a fixed pattern, valid for any vocabulary: the prompts
/// and cache fillers the decode benchmarks feed.
pub(super) fn filler(n: usize, vocab: usize) -> Vec<TokenId> {
    let vocab = vocab as TokenId;
    (0..n as TokenId).map(|i| (i * 7 + 3) % vocab).collect()
}

/// Seconds for `tokens` greedy decode steps after one untimed warm-up step,
/// from what `cache` holds, each reading its logits back as real decoding
/// does.
pub(super) fn time_decode<B: Backend>(
    model: &LoadedModel<B>,
    cache: &mut KvCache<B>,
    tokens: usize,
) -> anyhow::Result<f64> {
    let mut token = 1;
    model.forward(&[token], cache)?;
    let start = Instant::now();
    for _ in 0..tokens {
        let logits = model.forward(&[token], cache)?;
        token = dsi_core::verify::argmax(logits.row(0));
    }
    Ok(start.elapsed().as_secs_f64())
}
