//! Latency emulation: pads every forward of a model to a configured time, so
//! a small model can stand in for a large one with real tokens.
//!
//! The paper measures latency as TTFT (one forward over the prompt) and TPOT
//! (each later forward). A forward that starts any sequence from an empty
//! cache is padded to TTFT, every other one to TPOT; a batched forward is
//! one forward. An optional cost per row beyond the first models the
//! compute-bound regime, where a forward's time grows with the rows it
//! feeds (the default, zero, is the bandwidth-bound regime the paper's
//! figures assume). A forward slower than its target is not padded.

use crate::pause::sleep_until;
use dsi_core::model::{Feed, ForwardError, ForwardResults, KvModel, KvState, SeqId};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Time to first token and time per output token, plus a cost per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// A forward over the prompt (empty cache).
    pub ttft: Duration,
    /// Every later forward.
    pub tpot: Duration,
    /// Added per row a forward feeds beyond its first.
    pub per_row: Duration,
}

impl Latency {
    /// TTFT and TPOT in milliseconds, no cost per row.
    pub fn from_ms(ttft: f64, tpot: f64) -> Self {
        let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
        Self {
            ttft: ms(ttft),
            tpot: ms(tpot),
            per_row: Duration::ZERO,
        }
    }

    /// Adds `ms` milliseconds per row beyond a forward's first.
    pub fn with_per_row_ms(mut self, ms: f64) -> Self {
        self.per_row = Duration::from_secs_f64(ms.max(0.0) / 1e3);
        self
    }

    /// The time a forward that feeds `rows` rows takes at least.
    fn target(&self, from_empty: bool, rows: usize) -> Duration {
        let base = if from_empty { self.ttft } else { self.tpot };
        base + self.per_row * rows.saturating_sub(1) as u32
    }
}

impl FromStr for Latency {
    type Err = String;

    /// `TTFT,TPOT` or `TTFT,TPOT,PER_ROW` in milliseconds, e.g. `180.3,100.2`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid latency {s:?}: expected TTFT,TPOT[,PER_ROW] in milliseconds, e.g. 180.3,100.2"
            )
        };
        let parse = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0 && *v < 3.6e6)
                .ok_or_else(bad)
        };
        let parts: Vec<&str> = s.split(',').collect();
        match parts.as_slice() {
            [ttft, tpot] => Ok(Self::from_ms(parse(ttft)?, parse(tpot)?)),
            [ttft, tpot, per_row] => {
                Ok(Self::from_ms(parse(ttft)?, parse(tpot)?).with_per_row_ms(parse(per_row)?))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Microsecond precision, without binary noise (180.3, not
        // 180.29999999999998).
        let ms = |d: Duration| d.as_micros() as f64 / 1e3;
        write!(f, "{},{}", ms(self.ttft), ms(self.tpot))?;
        if !self.per_row.is_zero() {
            write!(f, ",{}", ms(self.per_row))?;
        }
        Ok(())
    }
}

/// A model whose forwards take at least the configured latency.
#[derive(Debug)]
pub struct Emulated<M> {
    inner: M,
    latency: Latency,
}

impl<M: KvModel> Emulated<M> {
    /// Wraps `inner`.
    pub fn new(inner: M, latency: Latency) -> Self {
        Self { inner, latency }
    }
}

impl<M: KvState> KvState for Emulated<M> {
    fn cache_bytes(&self) -> usize {
        self.inner.cache_bytes()
    }

    fn footprint(&self) -> Option<dsi_core::cache_layout::CacheFootprint> {
        self.inner.footprint()
    }

    fn vocab(&self) -> usize {
        self.inner.vocab()
    }

    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    fn cached(&self, seq: SeqId) -> usize {
        self.inner.cached(seq)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        self.inner.truncate(seq, keep);
    }

    fn release(&mut self, seq: SeqId) {
        self.inner.release(seq);
    }
}

impl<M: KvModel> KvModel for Emulated<M> {
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        let began = Instant::now();
        let before: Vec<usize> = feeds.iter().map(|f| self.inner.cached(f.seq)).collect();
        let rows = feeds.iter().map(|f| f.tokens.len()).sum();
        let target = self.latency.target(before.contains(&0), rows);
        let mut results = self.inner.forward(feeds);
        sleep_until(began + target, || {
            feeds.iter().all(|f| f.cancel.is_cancelled())
        });
        for ((feed, result), &before) in feeds.iter().zip(&mut results).zip(&before) {
            if result.is_ok() && feed.cancel.is_cancelled() {
                // Keep the contract: a cancelled feed leaves its cache as it was.
                self.inner.truncate(feed.seq, before);
                *result = Err(ForwardError::Cancelled);
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ttft_tpot() {
        let l: Latency = "180.3,100.2".parse().unwrap();
        assert_eq!(l.ttft, Duration::from_micros(180_300));
        assert_eq!(l.tpot, Duration::from_micros(100_200));
        assert!(l.per_row.is_zero());
        let l: Latency = "180,100,2.5".parse().unwrap();
        assert_eq!(l.per_row, Duration::from_micros(2_500));
        assert_eq!(l.to_string(), "180,100,2.5");
        assert_eq!(l.target(false, 5), Duration::from_millis(110));
        assert!("180".parse::<Latency>().is_err());
        assert!("1,2,3,4".parse::<Latency>().is_err());
        assert!("a,b".parse::<Latency>().is_err());
        assert!("-1,2".parse::<Latency>().is_err());
    }
}
