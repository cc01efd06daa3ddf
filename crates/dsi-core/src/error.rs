//! The one error type of `dsi-core`.

/// What can go wrong in the pure logic: always a caller's input that breaks
/// a documented precondition, never an internal state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A simulator or verifier parameter is outside its valid range.
    #[error("invalid {name}: {value} (expected {expected})")]
    InvalidParameter {
        /// The parameter's name as the user spells it (`c`, `a`, `k`, ...).
        name: &'static str,
        /// The value that was given.
        value: String,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// DSI needs more target servers than configured to never queue a job.
    #[error(
        "{servers} target server(s) are too few for k = {k} and c = {c}: \
         DSI needs at least {required} (ceil(1 / (k * c)))"
    )]
    TooFewServers {
        /// Servers configured.
        servers: usize,
        /// Servers required.
        required: usize,
        /// The lookahead.
        k: usize,
        /// The drafter latency in target forwards.
        c: f64,
    },
    /// Two inputs that must agree in length do not.
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// A token id is outside the vocabulary of the distribution it indexes.
    #[error("token id {token} is outside the vocabulary of size {vocab}")]
    TokenOutOfVocabulary {
        /// The offending token id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A probability row has no mass (all zeros, negative or not finite).
    #[error("probability row {row} is not a distribution: {reason}")]
    InvalidDistribution {
        /// Which row of the table.
        row: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The acceptance-rate estimator saw no complete match window.
    #[error(
        "no complete match window to estimate the acceptance rate from: \
         every example ended before its first mismatch; use more or longer examples"
    )]
    NoCompleteWindow,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
