//! `dsi`: the command-line front end of the DSI engine.
//!
//! Parses arguments, runs one subcommand, and maps errors to exit codes in
//! one place: 2 for invalid input (the user can fix the command), 1 for
//! failures while running.

// The binary's job is to print results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bundled;
mod codec;
mod exit;
mod generate;
mod identity;
mod kv_budget;
mod measure;
mod measure_loss;
mod memory;
mod model_args;
mod output;
mod placement;
mod plot;
mod pool_args;
mod profile_cache;
mod random_checkpoint;
mod random_shape;
mod remote_workers;
mod serve;
mod simulate;
mod train;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Distributed Speculative Inference of language models.
#[derive(Debug, Parser)]
#[command(name = "dsi", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the paper's offline simulator (time units) for one configuration,
    /// or draw its Figure 1 heatmap with `dsi simulate heatmap`.
    Simulate(simulate::SimulateArgs),
    /// Generate text from a prompt with a Hugging Face checkpoint.
    Generate(generate::GenerateArgs),
    /// Measure performance: `dsi bench decode`, `dsi bench sched`.
    Bench(bench::BenchArgs),
    /// The paper's measurements of a pair: `dsi measure acceptance|latency`.
    Measure(measure::MeasureArgs),
    /// Serve the OpenAI-compatible API and the live dashboard over HTTP.
    Serve(serve::ServeArgs),
    /// Train a tokenizer and a model on a folder of text files.
    Train(train::TrainArgs),
    /// Write a checkpoint of a released model's shape with random weights.
    RandomCheckpoint(random_checkpoint::RandomCheckpointArgs),
    /// Serve one model on one device to coordinators over gRPC
    /// (`--target-devices grpc://HOST:PORT` in generate and serve).
    Worker(worker::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Train(args) => train::run(args),
        Command::Measure(args) => measure::run(args),
        Command::RandomCheckpoint(args) => random_checkpoint::run(args),
        Command::Worker(args) => worker::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", exit::one_line(&err));
            ExitCode::from(exit::code(&err))
        }
    }
}
