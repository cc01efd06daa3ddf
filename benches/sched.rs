//! The real scheduler on synthetic workers against the offline simulator,
//! over the 12-point grid of `dsi_sched::bench::GRID` with a 20 ms target:
//! measured DSI/SI and DSI/non-SI speedups next to the simulator's on the
//! same acceptances, and the median scheduling overhead per job.
//!
//! `cargo bench --bench sched` (or `dsi bench sched --grid`, the same code).
//! `DSI_BENCH_TOKENS` and `DSI_BENCH_REPEATS` shrink or grow the run;
//! `DSI_BENCH_PAPER_EXACT=1` turns off the early bonus rule, which the
//! simulator does not model (see `Plan::early_bonus`).

#![allow(clippy::print_stdout)]

use dsi::sched::bench::{GRID, SchedBench};
use std::time::Duration;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tokens = env_or("DSI_BENCH_TOKENS", 100);
    let repeats = env_or("DSI_BENCH_REPEATS", 3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    println!(
        "{:>5} {:>5} {:>3} {:>3} | {:>8} {:>8} {:>7} | {:>8} {:>8} {:>7} | {:>9}",
        "a", "c", "k", "N", "DSI/SI", "sim", "err", "DSI/nSI", "sim", "err", "us/job"
    );
    let mut worst: f64 = 0.0;
    let mut overheads = Vec::new();
    for (a, c, k, servers) in GRID {
        let bench = SchedBench {
            c,
            a,
            k,
            servers,
            target: Duration::from_millis(20),
            tokens,
            repeats,
            seed: 0,
            early_bonus: std::env::var_os("DSI_BENCH_PAPER_EXACT").is_none(),
        };
        let r = runtime.block_on(bench.run()).expect("benchmark");
        assert!(r.lossless, "a generation differed from the target's tokens");
        worst = worst
            .max(r.relative_error_dsi_over_si.abs())
            .max(r.relative_error_dsi_over_nonsi.abs());
        overheads.push(r.overhead_us_per_job);
        println!(
            "{:>5} {:>5} {:>3} {:>3} | {:>8.3} {:>8.3} {:>+6.1}% | {:>8.3} {:>8.3} {:>+6.1}% | {:>9.0}",
            a,
            c,
            k,
            servers,
            r.measured_speedup_dsi_over_si,
            r.predicted_speedup_dsi_over_si,
            r.relative_error_dsi_over_si * 100.0,
            r.measured_speedup_dsi_over_nonsi,
            r.predicted_speedup_dsi_over_nonsi,
            r.relative_error_dsi_over_nonsi * 100.0,
            r.overhead_us_per_job,
        );
    }
    overheads.sort_by(f64::total_cmp);
    println!(
        "worst relative error {:.1}% (target: 5%); median overhead {:.0} us per job (target: 500)",
        worst * 100.0,
        overheads[overheads.len() / 2]
    );
}
