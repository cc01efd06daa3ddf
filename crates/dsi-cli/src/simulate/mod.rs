//! `dsi simulate`: the paper's offline simulator from the command line.
//!
//! `dsi simulate --c C --a A --k K --servers N` prints the mean costs of one
//! configuration; `dsi simulate heatmap --out DIR` computes and draws the
//! Figure 1 grid.

mod heatmap;
mod single;

use clap::{Args, Subcommand};

pub(crate) use heatmap::HeatmapArgs;
pub(crate) use single::SingleArgs;

/// Arguments of `dsi simulate`: one configuration, or a subcommand.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    allow_negative_numbers = true
)]
pub(crate) struct SimulateArgs {
    #[command(subcommand)]
    command: Option<SimulateCommand>,
    #[command(flatten)]
    single: SingleArgs,
}

#[derive(Debug, Subcommand)]
enum SimulateCommand {
    /// Compute the paper's Figure 1 grid and draw it as CSV, PNG and SVG.
    Heatmap(HeatmapArgs),
}

/// Runs `dsi simulate`.
pub(crate) fn run(args: SimulateArgs) -> anyhow::Result<()> {
    match args.command {
        Some(SimulateCommand::Heatmap(heatmap)) => heatmap::run(heatmap),
        None => single::run(args.single),
    }
}
