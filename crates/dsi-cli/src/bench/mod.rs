//! `dsi bench`: performance reports measured in one run.

mod decode;
mod dtypes;
mod modes;
mod remote;
mod sched;

use clap::{Args, Subcommand};

/// Arguments of `dsi bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Batch-1 decode and prefill speed of one model, against the machine's
    /// memory bandwidth.
    Decode(decode::DecodeArgs),
    /// The real scheduler on synthetic workers against the offline simulator.
    Sched(sched::SchedArgs),
    /// `--mode auto` against every fixed mode on real models, alternating
    /// (`--grid`: against every fixed policy auto chooses from).
    Modes(Box<modes::ModesArgs>),
    /// DSI over `dsi worker` processes (gRPC on loopback) against the same
    /// pool in process, alternating: speed ratio and overhead per job.
    Remote(remote::RemoteArgs),
}

/// Says on stderr how far a benchmark over prompts and rounds is.
fn progress(round: usize, rounds: usize, prompt: usize, prompts: usize) {
    eprint!(
        "\rround {}/{rounds}, prompt {}/{prompts}",
        round + 1,
        prompt + 1
    );
}

/// Runs `dsi bench`.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Decode(decode) => decode::run(decode),
        BenchCommand::Sched(sched) => sched::run(sched),
        BenchCommand::Modes(modes) => modes::run(*modes),
        BenchCommand::Remote(remote) => remote::run(remote),
    }
}
