//! What a worker's forwards looked like: how many sequences each carried,
//! how many rows it fed, how long it took. Batching is only worth what
//! these show.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the sequences-per-forward buckets.
pub const MEMBER_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
/// Upper bounds of the rows-per-forward buckets.
pub const ROW_BOUNDS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0];
/// Upper bounds (seconds) of the time-per-forward buckets.
pub const SECONDS_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counts of observations at or under each bound (cumulative, as
/// Prometheus wants them), their sum and their number.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records `value`.
    pub fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    /// Each bound with the observations at or under it.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds.iter().copied().zip(self.counts.iter().copied())
    }

    /// Sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds `other`'s observations (same bounds).
    pub fn merge(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(&other.counts) {
            *count += more;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// A worker's forwards so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardStats {
    /// Sequences per forward.
    pub members: Histogram,
    /// Rows (tokens fed) per forward.
    pub rows: Histogram,
    /// Seconds per forward.
    pub seconds: Histogram,
}

impl Default for ForwardStats {
    fn default() -> Self {
        Self {
            members: Histogram::new(MEMBER_BOUNDS),
            rows: Histogram::new(ROW_BOUNDS),
            seconds: Histogram::new(SECONDS_BOUNDS),
        }
    }
}

impl ForwardStats {
    /// Records one forward.
    pub fn record(&mut self, members: usize, rows: usize, took: Duration) {
        self.members.observe(members as f64);
        self.rows.observe(rows as f64);
        self.seconds.observe(took.as_secs_f64());
    }

    /// Adds `other`'s forwards.
    pub fn merge(&mut self, other: &ForwardStats) {
        self.members.merge(&other.members);
        self.rows.merge(&other.rows);
        self.seconds.merge(&other.seconds);
    }
}

/// Shared between the worker thread that records and whoever reads.
#[derive(Debug, Clone, Default)]
pub struct ForwardLog(Arc<Mutex<ForwardStats>>);

impl ForwardLog {
    /// Records one forward.
    pub fn record(&self, members: usize, rows: usize, took: Duration) {
        self.lock().record(members, rows, took);
    }

    /// The forwards so far.
    pub fn snapshot(&self) -> ForwardStats {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ForwardStats> {
        // Plain counters: a panic elsewhere leaves them usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut stats = ForwardStats::default();
        stats.record(1, 1, Duration::from_millis(3));
        stats.record(3, 12, Duration::from_millis(30));
        let members: Vec<u64> = stats.members.buckets().map(|(_, n)| n).collect();
        assert_eq!(members, [1, 1, 2, 2, 2, 2, 2]);
        assert_eq!(stats.rows.sum(), 13.0);
        assert_eq!(stats.seconds.count(), 2);
    }
}
