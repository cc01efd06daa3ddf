//! Latency emulation: pads every forward of a model to a configured time, so
//! a small model can stand in for a large one with real tokens.
//!
//! The paper measures latency as TTFT (one forward over the prompt) and TPOT
//! (each later forward). A forward into an empty cache is padded to TTFT,
//! every other one to TPOT. A forward slower than its target is not padded.

use crate::pause::sleep_until;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::{ForwardError, KvModel};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Time to first token and time per output token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// A forward over the prompt (empty cache).
    pub ttft: Duration,
    /// Every later forward.
    pub tpot: Duration,
}

impl Latency {
    /// TTFT and TPOT in milliseconds.
    pub fn from_ms(ttft: f64, tpot: f64) -> Self {
        Self {
            ttft: Duration::from_secs_f64(ttft.max(0.0) / 1e3),
            tpot: Duration::from_secs_f64(tpot.max(0.0) / 1e3),
        }
    }
}

impl FromStr for Latency {
    type Err = String;

    /// `TTFT,TPOT` in milliseconds, e.g. `180.3,100.2`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid latency {s:?}: expected TTFT,TPOT in milliseconds, e.g. 180.3,100.2")
        };
        let (ttft, tpot) = s.split_once(',').ok_or_else(bad)?;
        let parse = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0 && *v < 3.6e6)
                .ok_or_else(bad)
        };
        Ok(Self::from_ms(parse(ttft)?, parse(tpot)?))
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{}",
            self.ttft.as_secs_f64() * 1e3,
            self.tpot.as_secs_f64() * 1e3
        )
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

impl<M: KvModel> KvModel for Emulated<M> {
    fn fork(&self) -> Option<Box<dyn KvModel>> {
        let inner = self.inner.fork()?;
        Some(Box::new(Emulated::new(inner, self.latency)))
    }

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

    fn cached(&self) -> usize {
        self.inner.cached()
    }

    fn truncate(&mut self, keep: usize) {
        self.inner.truncate(keep);
    }

    fn forward(
        &mut self,
        tokens: &[TokenId],
        rows: usize,
        cancel: &CancelFlag,
    ) -> Result<Vec<f32>, ForwardError> {
        let began = Instant::now();
        let before = self.inner.cached();
        let target = if before == 0 {
            self.latency.ttft
        } else {
            self.latency.tpot
        };
        let logits = self.inner.forward(tokens, rows, cancel)?;
        if let Err(cancelled) = sleep_until(began + target, cancel) {
            // Keep the contract: a cancelled forward leaves the cache as it was.
            self.inner.truncate(before);
            return Err(cancelled);
        }
        Ok(logits)
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
        assert!("180".parse::<Latency>().is_err());
        assert!("a,b".parse::<Latency>().is_err());
        assert!("-1,2".parse::<Latency>().is_err());
    }
}
