//! `dsi simulate --c C --a A --k K --servers N`: one configuration.

use crate::exit::UsageError;
use crate::output::Format;
use clap::Args;
use dsi_core::sim::closed_form::si_expected_cost;
use dsi_core::sim::{SimParams, Simulation};
use serde::Serialize;

/// One simulator configuration.
#[derive(Debug, Args)]
pub(crate) struct SingleArgs {
    /// Drafter latency as a fraction of one target forward, in (0, 1].
    #[arg(long, required = true)]
    c: Option<f64>,
    /// Acceptance rate, in [0, 1].
    #[arg(long, required = true)]
    a: Option<f64>,
    /// Lookahead: drafts per verification job, at least 1.
    #[arg(long, required = true)]
    k: Option<usize>,
    /// Target servers available to DSI (the speculation-parallelism degree).
    #[arg(long, required = true)]
    servers: Option<usize>,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Runs to average over.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Seed of the acceptance samples.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The printed result; JSON field names are part of the CLI's contract.
#[derive(Debug, Serialize)]
struct Report {
    nonsi: f64,
    si: f64,
    dsi: f64,
    speedup_dsi_over_si: f64,
    speedup_dsi_over_nonsi: f64,
    speedup_si_over_nonsi: f64,
    min_servers: usize,
    si_closed_form: f64,
    c: f64,
    a: f64,
    k: usize,
    servers: usize,
    tokens: usize,
    repeats: usize,
    seed: u64,
}

pub(crate) fn run(args: SingleArgs) -> anyhow::Result<()> {
    let missing = |flag: &str| UsageError(format!("--{flag} is required"));
    let c = args.c.ok_or_else(|| missing("c"))?;
    let a = args.a.ok_or_else(|| missing("a"))?;
    let k = args.k.ok_or_else(|| missing("k"))?;
    let servers = args.servers.ok_or_else(|| missing("servers"))?;
    if args.repeats == 0 {
        return Err(UsageError("invalid repeats: 0 (expected at least 1)".into()).into());
    }
    let params = SimParams::new(c, a, k, args.tokens)?;
    params.check_servers(servers)?;

    let costs = Simulation {
        params,
        repeats: args.repeats,
        seed: args.seed,
    }
    .mean();
    let report = Report {
        nonsi: costs.nonsi,
        si: costs.si,
        dsi: costs.dsi,
        speedup_dsi_over_si: costs.speedup_dsi_over_si(),
        speedup_dsi_over_nonsi: costs.speedup_dsi_over_nonsi(),
        speedup_si_over_nonsi: costs.speedup_si_over_nonsi(),
        min_servers: params.min_servers(),
        si_closed_form: si_expected_cost(&params),
        c,
        a,
        k,
        servers,
        tokens: args.tokens,
        repeats: args.repeats,
        seed: args.seed,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(())
}

fn print_text(r: &Report) {
    println!(
        "c = {}, a = {}, k = {}, {} target servers (at least {} needed), {} tokens, {} repeats, seed {}",
        r.c, r.a, r.k, r.servers, r.min_servers, r.tokens, r.repeats, r.seed
    );
    println!("mean cost in target forwards:");
    println!("  non-SI  {:>10.2}", r.nonsi);
    println!(
        "  SI      {:>10.2}   (closed form {:.2})",
        r.si, r.si_closed_form
    );
    println!("  DSI     {:>10.2}", r.dsi);
    println!("speedups:");
    println!("  DSI over SI      {:>6.3}x", r.speedup_dsi_over_si);
    println!("  DSI over non-SI  {:>6.3}x", r.speedup_dsi_over_nonsi);
    println!("  SI over non-SI   {:>6.3}x", r.speedup_si_over_nonsi);
}
