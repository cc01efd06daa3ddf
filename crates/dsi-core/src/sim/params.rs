//! Validated simulator inputs and the server-count rule.

use crate::{Error, Result};

/// One simulator configuration: drafter latency `c` (in target forwards),
/// acceptance rate `a`, lookahead `k`, and the number of tokens to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    c: f64,
    a: f64,
    k: usize,
    tokens: usize,
}

impl SimParams {
    /// Checks `0 < c <= 1` (a drafter slower than the target is pointless),
    /// `0 <= a <= 1`, `k >= 1` and `tokens >= 1`.
    pub fn new(c: f64, a: f64, k: usize, tokens: usize) -> Result<Self> {
        if !(c > 0.0 && c <= 1.0) {
            return Err(invalid(
                "c",
                c,
                "0 < c <= 1, the drafter latency in target forwards",
            ));
        }
        if !(0.0..=1.0).contains(&a) {
            return Err(invalid("a", a, "0 <= a <= 1"));
        }
        if k == 0 {
            return Err(invalid("k", k, "k >= 1"));
        }
        if tokens == 0 {
            return Err(invalid("tokens", tokens, "at least 1 token"));
        }
        Ok(Self { c, a, k, tokens })
    }

    /// Drafter latency as a fraction of one target forward.
    pub fn c(&self) -> f64 {
        self.c
    }

    /// Acceptance rate.
    pub fn a(&self) -> f64 {
        self.a
    }

    /// Lookahead.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Tokens to generate (`S` in the paper).
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Target servers DSI needs so that no verification job ever waits.
    pub fn min_servers(&self) -> usize {
        min_servers(self.k, self.c)
    }

    /// Refuses a server count below [`SimParams::min_servers`].
    pub fn check_servers(&self, servers: usize) -> Result<()> {
        let required = self.min_servers();
        if servers >= required {
            Ok(())
        } else {
            Err(Error::TooFewServers {
                servers,
                required,
                k: self.k,
                c: self.c,
            })
        }
    }
}

/// `ceil(1 / (k * c))`: one target forward spans `1 / (k c)` drafting rounds
/// of `k` tokens, each of which starts a job. Computed exactly as the authors'
/// simulator does, so grid cells are excluded identically.
pub fn min_servers(k: usize, c: f64) -> usize {
    (1.0 / (k.max(1) as f64 * c)).ceil() as usize
}

fn invalid(name: &'static str, value: impl ToString, expected: &'static str) -> Error {
    Error::InvalidParameter {
        name,
        value: value.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ranges() {
        assert!(SimParams::new(0.1, 0.9, 5, 100).is_ok());
        assert!(SimParams::new(1.0, 0.0, 1, 1).is_ok());
        assert!(SimParams::new(0.0, 0.5, 5, 100).is_err());
        assert!(SimParams::new(1.01, 0.5, 5, 100).is_err());
        assert!(SimParams::new(f64::NAN, 0.5, 5, 100).is_err());
        assert!(SimParams::new(0.5, -0.01, 5, 100).is_err());
        assert!(SimParams::new(0.5, 1.01, 5, 100).is_err());
        assert!(SimParams::new(0.5, 0.5, 0, 100).is_err());
        assert!(SimParams::new(0.5, 0.5, 5, 0).is_err());
    }

    #[test]
    fn server_rule() {
        assert_eq!(min_servers(1, 1.0), 1);
        assert_eq!(min_servers(5, 0.1), 2);
        assert_eq!(min_servers(1, 0.01), 100);
        assert_eq!(min_servers(15, 0.01), 7);
        assert_eq!(min_servers(14, 0.01), 8);
        let p = SimParams::new(0.01, 0.5, 1, 10).unwrap();
        assert_eq!(
            p.check_servers(7),
            Err(Error::TooFewServers {
                servers: 7,
                required: 100,
                k: 1,
                c: 0.01
            })
        );
        assert!(p.check_servers(100).is_ok());
    }
}
