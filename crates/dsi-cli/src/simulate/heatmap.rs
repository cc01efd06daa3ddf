//! `dsi simulate heatmap --out DIR`: the paper's Figure 1, as CSV, PNG and SVG.

use crate::exit::UsageError;
use crate::plot;
use anyhow::Context;
use clap::Args;
use dsi_core::sim::heatmap::{Cell, HeatmapSpec};
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The heatmap grid and where to write it.
#[derive(Debug, Args)]
pub(crate) struct HeatmapArgs {
    /// Folder for heatmap.csv, heatmap.png and heatmap.svg (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Steps per axis; the lookahead k runs over 1..=ndim.
    #[arg(long, default_value_t = 20)]
    ndim: usize,
    /// Target servers available to DSI; configurations needing more are excluded.
    #[arg(long, default_value_t = 7)]
    servers: usize,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Runs to average over per configuration.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Seed shared by every configuration.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub(crate) fn run(args: HeatmapArgs) -> anyhow::Result<()> {
    let spec = validate(&args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output folder {}", args.out.display()))?;

    let cells = compute(&spec)?;
    let csv_path = args.out.join("heatmap.csv");
    std::fs::write(&csv_path, to_csv(&cells))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let figure = plot::HeatmapFigure::new(&spec, &cells);
    let svg_path = args.out.join("heatmap.svg");
    figure.write_svg(&svg_path)?;
    let png_path = args.out.join("heatmap.png");
    figure.write_png(&png_path)?;

    summarize(&cells, &args.out);
    Ok(())
}

fn validate(args: &HeatmapArgs) -> anyhow::Result<HeatmapSpec> {
    let positive = |name: &str, value: usize| {
        if value == 0 {
            Err(UsageError(format!(
                "invalid {name}: 0 (expected at least 1)"
            )))
        } else {
            Ok(())
        }
    };
    positive("ndim", args.ndim)?;
    positive("servers", args.servers)?;
    positive("tokens", args.tokens)?;
    positive("repeats", args.repeats)?;
    if args.ndim > 1000 {
        return Err(UsageError(format!(
            "invalid ndim: {} (expected at most 1000)",
            args.ndim
        ))
        .into());
    }
    Ok(HeatmapSpec {
        ndim: args.ndim,
        servers: args.servers,
        tokens: args.tokens,
        repeats: args.repeats,
        seed: args.seed,
    })
}

/// Evaluates every cell on all cores, with a progress bar on stderr.
fn compute(spec: &HeatmapSpec) -> anyhow::Result<Vec<Cell>> {
    let coords = spec.cells();
    let bar = ProgressBar::new(coords.len() as u64).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} cells, {elapsed} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("simulating");

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Option<Cell>)>> = Mutex::new(Vec::with_capacity(coords.len()));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> dsi_core::Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(c, a)) = coords.get(index) else {
                            return Ok(());
                        };
                        let cell = spec.evaluate(c, a)?;
                        results
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .push((index, cell));
                        bar.inc(1);
                    }
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();

    let mut results = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().filter_map(|(_, cell)| cell).collect())
}

/// One row per cell; cells where no lookahead fits the servers are absent.
fn to_csv(cells: &[Cell]) -> String {
    let mut csv = String::from(
        "c,a,nonsi_cost,si_k,si_cost,dsi_k,dsi_cost,\
         speedup_si_over_nonsi,speedup_dsi_over_si,speedup_dsi_over_nonsi,speedup_dsi_over_min_si_nonsi\n",
    );
    for cell in cells {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6}",
            cell.c,
            cell.a,
            cell.nonsi,
            cell.si.k,
            cell.si.cost,
            cell.dsi.k,
            cell.dsi.cost,
            cell.speedup_si_over_nonsi(),
            cell.speedup_dsi_over_si(),
            cell.speedup_dsi_over_nonsi(),
            cell.speedup_dsi_over_baseline(),
        );
    }
    csv
}

fn summarize(cells: &[Cell], out: &Path) {
    let min_of = |f: fn(&Cell) -> f64| cells.iter().map(f).fold(f64::INFINITY, f64::min);
    let max_of = |f: fn(&Cell) -> f64| cells.iter().map(f).fold(0.0, f64::max);
    let si_slowdowns = cells
        .iter()
        .filter(|c| c.speedup_si_over_nonsi() < 1.0)
        .count();
    println!(
        "{} cells written to {}/heatmap.{{csv,png,svg}}",
        cells.len(),
        out.display()
    );
    println!(
        "SI slower than non-SI in {si_slowdowns} cells; DSI over min(SI, non-SI): {:.3}x to {:.3}x; \
         DSI over SI up to {:.3}x, over non-SI up to {:.3}x",
        min_of(Cell::speedup_dsi_over_baseline),
        max_of(Cell::speedup_dsi_over_baseline),
        max_of(Cell::speedup_dsi_over_si),
        max_of(Cell::speedup_dsi_over_nonsi),
    );
}
