//! What one request asks of the scheduler: the algorithm, its lookahead, the
//! pool it runs on and when to stop.

use crate::sampling::Decoding;
use crate::{Error, Result, TokenId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The decoding algorithm. All three run through the same state machine,
/// each with its restrictions, so their comparison is fair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// How a generation uses its workers: the algorithm, its lookahead and how
/// many target servers it spreads jobs over. A [`crate::schedule::Machine`]
/// starts with its plan's and may be retuned between epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    /// The algorithm.
    pub mode: Mode,
    /// Drafts per verification job (ignored by non-SI).
    pub k: usize,
    /// Target servers in use (SI and non-SI use one).
    pub servers: usize,
}

impl Policy {
    /// The policy with what its mode ignores normalized away: non-SI has no
    /// lookahead, SI and non-SI one server.
    pub fn normalized(self) -> Self {
        match self.mode {
            Mode::NonSi => Self {
                k: 0,
                servers: 1,
                ..self
            },
            Mode::Si => Self { servers: 1, ..self },
            Mode::Dsi => self,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::NonSi => f.write_str("nonsi"),
            Mode::Si => write!(f, "si k={}", self.k),
            Mode::Dsi => write!(f, "dsi k={} N={}", self.k, self.servers),
        }
    }
}

/// What a request asks for: one algorithm, or `auto`, which lets the pool
/// choose the algorithm, lookahead and servers from its measured costs and
/// the acceptance it observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSetting {
    /// The pool chooses, and may change its choice between epochs.
    Auto,
    /// This algorithm throughout.
    #[serde(untagged)]
    Fixed(Mode),
}

impl From<Mode> for ModeSetting {
    fn from(mode: Mode) -> Self {
        ModeSetting::Fixed(mode)
    }
}

impl ModeSetting {
    /// True when the setting may draft (a fixed drafting mode, or auto).
    pub fn drafts(self) -> bool {
        match self {
            ModeSetting::Auto => true,
            ModeSetting::Fixed(mode) => mode.drafts(),
        }
    }
}

impl FromStr for ModeSetting {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(ModeSetting::Auto),
            other => other
                .parse()
                .map(ModeSetting::Fixed)
                .map_err(|_| Error::InvalidParameter {
                    name: "mode",
                    value: other.to_string(),
                    expected: "auto, dsi, si or nonsi",
                }),
        }
    }
}

impl fmt::Display for ModeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeSetting::Auto => f.write_str("auto"),
            ModeSetting::Fixed(mode) => mode.fmt(f),
        }
    }
}

/// The settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The algorithm.
    pub mode: Mode,
    /// Drafts per verification job (the lookahead).
    pub k: usize,
    /// Target workers available. SI and non-SI use one at a time; DSI all,
    /// unless retuned to fewer.
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
