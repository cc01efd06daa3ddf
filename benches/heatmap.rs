//! The paper's whole Figure 1 grid: 21 x 21 cells, k = 1..20, SI and DSI
//! (non-SI is closed-form), 5 repeats of 1000 tokens, on one thread.
//!
//! Target: under 10 s in release on a 2-core machine (`dsi simulate heatmap`
//! also spreads cells over every core). Run with `cargo bench --bench heatmap`.

use criterion::{Criterion, criterion_group, criterion_main};
use dsi::core::sim::heatmap::HeatmapSpec;
use dsi::core::sim::{SimParams, Simulation};
use std::hint::black_box;
use std::time::Duration;

fn whole_heatmap(c: &mut Criterion) {
    let mut group = c.benchmark_group("heatmap");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("default_grid_single_thread", |b| {
        b.iter(|| {
            let cells = HeatmapSpec::default().run(|_, _| {}).expect("valid grid");
            black_box(cells)
        })
    });
    group.finish();
}

fn one_configuration(c: &mut Criterion) {
    let params = SimParams::new(0.1, 0.9, 5, 1000).expect("valid parameters");
    let sim = Simulation {
        params,
        repeats: 5,
        seed: 42,
    };
    c.bench_function("simulate_c0.1_a0.9_k5_5x1000", |b| {
        b.iter(|| black_box(sim.mean()))
    });
}

criterion_group!(benches, whole_heatmap, one_configuration);
criterion_main!(benches);
