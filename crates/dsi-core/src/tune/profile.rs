//! What a pool's jobs cost on its hardware, as measured: the numbers the
//! tuner's simulator runs on.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Measured job latencies of one pool, in milliseconds, as its driver sees
/// them (a forward plus the worker's and driver's own work).
///
/// Contention is what makes DSI's speculation parallelism cost something
/// where servers share compute: `target_slowdown[j - 1]` is how much longer
/// a target job takes while `j` target jobs run at once (1 for `j = 1`),
/// `target_slowdown_with_drafter` the same with the drafter also busy, and
/// `drafter_slowdown[j]` how much longer a drafter step takes beside `j`
/// target jobs (1 for `j = 0`). Independent devices measure about 1
/// everywhere; one CPU shared by every worker about `j` or worse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostProfile {
    /// A verification job alone, by rows it feeds (`[r - 1]`: `r - 1`
    /// drafts plus the token before them), over a warm cache.
    pub target_ms_by_rows: Vec<f64>,
    /// A target job that fills an empty cache with `prefill_tokens` tokens.
    pub target_prefill_ms: f64,
    /// Tokens of that prefill.
    pub prefill_tokens: usize,
    /// A drafter job's cost beyond its steps (dispatch, catching up).
    pub drafter_job_ms: f64,
    /// One drafter step (one token) within a job.
    pub drafter_step_ms: f64,
    /// Target job slowdown by target jobs running at once (`[j - 1]`).
    pub target_slowdown: Vec<f64>,
    /// The same with the drafter drafting beside them (`[j - 1]`).
    pub target_slowdown_with_drafter: Vec<f64>,
    /// Drafter step slowdown beside `j` target jobs (`[j]`).
    pub drafter_slowdown: Vec<f64>,
}

impl CostProfile {
    /// Checks that every figure is finite and positive, slowdowns at least
    /// near 1, and the tables long enough for `servers` targets.
    pub fn validate(&self, servers: usize) -> Result<()> {
        let bad = |name: &'static str, why: &'static str| {
            Err(Error::InvalidParameter {
                name,
                value: "cost profile".into(),
                expected: why,
            })
        };
        let positive = |v: &f64| v.is_finite() && *v > 0.0;
        if self.target_ms_by_rows.is_empty() || !self.target_ms_by_rows.iter().all(positive) {
            return bad("target_ms_by_rows", "positive times for 1 row and up");
        }
        if !positive(&self.target_prefill_ms) || !positive(&self.drafter_step_ms) {
            return bad(
                "target_prefill_ms",
                "positive prefill and drafter step times",
            );
        }
        if !(self.drafter_job_ms.is_finite() && self.drafter_job_ms >= 0.0) {
            return bad("drafter_job_ms", "a finite, non-negative time");
        }
        let slowdowns = [
            &self.target_slowdown,
            &self.target_slowdown_with_drafter,
            &self.drafter_slowdown,
        ];
        if !slowdowns
            .iter()
            .all(|s| s.iter().all(|v| v.is_finite() && *v > 0.1))
        {
            return bad("target_slowdown", "finite slowdown factors");
        }
        if self.target_slowdown.len() < servers
            || self.target_slowdown_with_drafter.len() < servers
            || self.drafter_slowdown.len() < servers + 1
        {
            return bad("target_slowdown", "a factor for every number of servers");
        }
        Ok(())
    }

    /// A verification job over `rows` rows, alone. Past the measured rows
    /// the last measured step per row continues.
    pub fn target_ms(&self, rows: usize) -> f64 {
        let table = &self.target_ms_by_rows;
        let rows = rows.max(1);
        if rows <= table.len() {
            return table[rows - 1];
        }
        let last = table[table.len() - 1];
        let step = if table.len() >= 2 {
            (last - table[table.len() - 2]).max(0.0)
        } else {
            0.0
        };
        last + step * (rows - table.len()) as f64
    }

    /// A drafter job of `count` steps, alone.
    pub fn drafter_ms(&self, count: usize) -> f64 {
        self.drafter_job_ms + self.drafter_step_ms * count as f64
    }

    /// How much longer a target job takes while `targets` target jobs (it
    /// included) run and the drafter does or does not.
    pub fn target_factor(&self, targets: usize, drafter: bool) -> f64 {
        let table = if drafter {
            &self.target_slowdown_with_drafter
        } else {
            &self.target_slowdown
        };
        lookup(table, targets.max(1) - 1)
    }

    /// How much longer a drafter step takes beside `targets` target jobs.
    pub fn drafter_factor(&self, targets: usize) -> f64 {
        lookup(&self.drafter_slowdown, targets)
    }

    /// `c`: a drafter step over a one-row target job, both alone.
    pub fn c(&self) -> f64 {
        self.drafter_step_ms / self.target_ms(1)
    }

    /// A profile of servers that share nothing: latencies fixed by rows, no
    /// slowdown under concurrency (what latency emulation and separate
    /// devices look like); for tests and what-ifs.
    pub fn independent(target_ms_by_rows: Vec<f64>, drafter_step_ms: f64, servers: usize) -> Self {
        Self {
            target_prefill_ms: target_ms_by_rows[0],
            prefill_tokens: 1,
            target_ms_by_rows,
            drafter_job_ms: 0.0,
            drafter_step_ms,
            target_slowdown: vec![1.0; servers],
            target_slowdown_with_drafter: vec![1.0; servers],
            drafter_slowdown: vec![1.0; servers + 1],
        }
    }
}

/// `table[i]`, or past its end the last entry scaled as if each further job
/// took an equal share (processor sharing).
fn lookup(table: &[f64], i: usize) -> f64 {
    match table.get(i) {
        Some(&v) => v,
        None => match table.last() {
            Some(&last) => last * (i + 1) as f64 / table.len() as f64,
            None => 1.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_past_the_table_continue_its_last_step() {
        let p = CostProfile::independent(vec![10.0, 11.0, 13.0], 1.0, 2);
        assert_eq!(p.target_ms(0), 10.0);
        assert_eq!(p.target_ms(3), 13.0);
        assert_eq!(p.target_ms(5), 17.0);
        assert_eq!(p.drafter_ms(4), 4.0);
        assert!(p.validate(2).is_ok());
        assert!(p.validate(3).is_err());
    }

    #[test]
    fn slowdowns_past_the_table_share_the_last_one() {
        let mut p = CostProfile::independent(vec![10.0], 1.0, 2);
        p.target_slowdown = vec![1.0, 2.0];
        assert_eq!(p.target_factor(2, false), 2.0);
        assert_eq!(p.target_factor(4, false), 4.0);
        assert_eq!(p.drafter_factor(0), 1.0);
    }

    #[test]
    fn nonsense_is_refused() {
        let mut p = CostProfile::independent(vec![10.0], 1.0, 1);
        p.target_ms_by_rows[0] = f64::NAN;
        assert!(p.validate(1).is_err());
        let mut p = CostProfile::independent(vec![10.0], 1.0, 1);
        p.drafter_step_ms = 0.0;
        assert!(p.validate(1).is_err());
    }
}
