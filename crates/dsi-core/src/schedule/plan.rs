//! What one request asks of the scheduler: the algorithm, its lookahead, the
//! pool it runs on and when to stop.

use crate::sampling::Decoding;
use crate::{Error, Result, TokenId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The decoding algorithm. All three run through the same state machine,
/// each with its restrictions, so their comparison is fair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plain autoregressive decoding: one target forward per token.
    NonSi,
    /// Speculative inference: the drafter waits for every verification, one
    /// target server.
    Si,
    /// Distributed speculative inference: the drafter never waits, a pool of
    /// target servers verifies concurrently.
    Dsi,
}

impl Mode {
    /// True when the mode needs a drafter.
    pub fn drafts(self) -> bool {
        !matches!(self, Mode::NonSi)
    }
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "nonsi" | "non-si" => Ok(Mode::NonSi),
            "si" => Ok(Mode::Si),
            "dsi" => Ok(Mode::Dsi),
            other => Err(Error::InvalidParameter {
                name: "mode",
                value: other.to_string(),
                expected: "dsi, si or nonsi",
            }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::NonSi => "nonsi",
            Mode::Si => "si",
            Mode::Dsi => "dsi",
        })
    }
}

/// The settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The algorithm.
    pub mode: Mode,
    /// Drafts per verification job (the lookahead).
    pub k: usize,
    /// Target workers available. SI uses only the first; non-SI and DSI use all.
    pub servers: usize,
    /// New tokens to generate at most.
    pub max_new_tokens: usize,
    /// Tokens that end the generation; they are not part of the output.
    pub eos: Vec<TokenId>,
    /// Sampling and verification.
    pub decoding: Decoding,
    /// End an epoch as soon as a bonus token disagrees with the next draft
    /// (the default). The paper's simulator does not model this: there the
    /// rejection waits for the job that verifies that draft. Turning it off
    /// reproduces the simulator's timing exactly; the output is the same.
    pub early_bonus: bool,
}

impl Plan {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, value: usize, expected| {
            Err(Error::InvalidParameter {
                name,
                value: value.to_string(),
                expected,
            })
        };
        if self.mode.drafts() && self.k == 0 {
            return invalid("k", self.k, "k >= 1 drafts per verification");
        }
        if self.servers == 0 {
            return invalid("servers", self.servers, "at least one target server");
        }
        if self.max_new_tokens == 0 {
            return invalid("max_new_tokens", 0, "at least 1 new token");
        }
        self.decoding.params.validate()
    }
}
