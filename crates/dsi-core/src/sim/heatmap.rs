//! The paper's Figure 1 grid: for every drafter latency `c` and acceptance
//! rate `a`, the best lookahead of each algorithm and the resulting speedups.
//!
//! Axes are `linspace(0, 1, ndim + 1)` with `c` clamped below at 0.01 and `a`
//! clamped to `[0.01, 0.99]`; `k` runs over `1..=ndim`. A `(c, a, k)` that
//! needs more than `servers` target servers is excluded for every algorithm,
//! as in the authors' code.

use super::{Costs, SimParams, Simulation};
use crate::Result;
use serde::Serialize;

const AXIS_MIN: f64 = 0.01;
const A_MAX: f64 = 0.99;

/// What to compute: the grid resolution and the simulation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatmapSpec {
    /// Steps per axis; `k` runs over `1..=ndim`.
    pub ndim: usize,
    /// Target servers available to DSI.
    pub servers: usize,
    /// Tokens per simulated generation.
    pub tokens: usize,
    /// Repeats per configuration.
    pub repeats: usize,
    /// Seed shared by every configuration (common random numbers).
    pub seed: u64,
}

impl Default for HeatmapSpec {
    /// The paper's settings.
    fn default() -> Self {
        Self {
            ndim: 20,
            servers: 7,
            tokens: 1000,
            repeats: 5,
            seed: 42,
        }
    }
}

/// The best lookahead of one algorithm in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Best {
    /// The lookahead with the lowest mean cost.
    pub k: usize,
    /// Its mean cost in target forwards.
    pub cost: f64,
}

/// One `(c, a)` cell of the heatmap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cell {
    /// Drafter latency.
    pub c: f64,
    /// Acceptance rate.
    pub a: f64,
    /// Non-SI cost (independent of `k`).
    pub nonsi: f64,
    /// SI at its best lookahead.
    pub si: Best,
    /// DSI at its best lookahead.
    pub dsi: Best,
}

impl Cell {
    /// Panel 1: SI over non-SI.
    pub fn speedup_si_over_nonsi(&self) -> f64 {
        self.nonsi / self.si.cost
    }

    /// Panel 2: DSI over SI.
    pub fn speedup_dsi_over_si(&self) -> f64 {
        self.si.cost / self.dsi.cost
    }

    /// Panel 3: DSI over non-SI.
    pub fn speedup_dsi_over_nonsi(&self) -> f64 {
        self.nonsi / self.dsi.cost
    }

    /// Panel 4: DSI over the better of SI and non-SI.
    pub fn speedup_dsi_over_baseline(&self) -> f64 {
        self.si.cost.min(self.nonsi) / self.dsi.cost
    }
}

impl HeatmapSpec {
    /// The drafter-latency axis.
    pub fn c_values(&self) -> Vec<f64> {
        linspace01(self.ndim)
            .into_iter()
            .map(|v| v.max(AXIS_MIN))
            .collect()
    }

    /// The acceptance-rate axis.
    pub fn a_values(&self) -> Vec<f64> {
        linspace01(self.ndim)
            .into_iter()
            .map(|v| v.clamp(AXIS_MIN, A_MAX))
            .collect()
    }

    /// Every `(c, a)` pair, `c` major.
    pub fn cells(&self) -> Vec<(f64, f64)> {
        let a_values = self.a_values();
        self.c_values()
            .into_iter()
            .flat_map(|c| a_values.iter().map(move |&a| (c, a)))
            .collect()
    }

    /// Evaluates one cell; `None` when no lookahead fits in `servers`.
    pub fn evaluate(&self, c: f64, a: f64) -> Result<Option<Cell>> {
        let mut cell: Option<Cell> = None;
        for k in 1..=self.ndim.max(1) {
            let params = SimParams::new(c, a, k, self.tokens)?;
            if params.check_servers(self.servers).is_err() {
                continue;
            }
            let Costs { nonsi, si, dsi } = Simulation {
                params,
                repeats: self.repeats,
                seed: self.seed,
            }
            .mean();
            let best = cell.get_or_insert(Cell {
                c,
                a,
                nonsi,
                si: Best { k, cost: si },
                dsi: Best { k, cost: dsi },
            });
            if si < best.si.cost {
                best.si = Best { k, cost: si };
            }
            if dsi < best.dsi.cost {
                best.dsi = Best { k, cost: dsi };
            }
        }
        Ok(cell)
    }

    /// Evaluates every cell in order, reporting `(done, total)` after each.
    pub fn run(&self, mut progress: impl FnMut(usize, usize)) -> Result<Vec<Cell>> {
        let cells = self.cells();
        let mut out = Vec::with_capacity(cells.len());
        for (i, &(c, a)) in cells.iter().enumerate() {
            out.extend(self.evaluate(c, a)?);
            progress(i + 1, cells.len());
        }
        Ok(out)
    }
}

/// `numpy.linspace(0, 1, ndim + 1)`: `i * (1 / ndim)`, the last point exactly 1.
fn linspace01(ndim: usize) -> Vec<f64> {
    let ndim = ndim.max(1);
    let step = 1.0 / ndim as f64;
    (0..=ndim)
        .map(|i| if i == ndim { 1.0 } else { i as f64 * step })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_match_the_paper() {
        let spec = HeatmapSpec::default();
        let c = spec.c_values();
        let a = spec.a_values();
        assert_eq!(c.len(), 21);
        assert_eq!((c[0], c[1], c[20]), (0.01, 0.05, 1.0));
        assert_eq!((a[0], a[20]), (0.01, 0.99));
        assert_eq!(spec.cells().len(), 441);
    }

    #[test]
    fn excluded_lookaheads_are_skipped() {
        // c = 0.01 with 7 servers allows only k >= 15.
        let spec = HeatmapSpec {
            tokens: 50,
            repeats: 1,
            ..HeatmapSpec::default()
        };
        let cell = spec.evaluate(0.01, 0.5).unwrap().unwrap();
        assert!(cell.si.k >= 15 && cell.dsi.k >= 15, "{cell:?}");
        // With one server and ndim 2, c = 0.05 fits no lookahead.
        let tiny = HeatmapSpec {
            ndim: 2,
            servers: 1,
            ..spec
        };
        assert_eq!(tiny.evaluate(0.05, 0.5).unwrap(), None);
    }
}
