//! The one error type of `dsi-sched`.

/// What can stop a request before it produces tokens.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// The request or plan is invalid (bad parameter, empty prompt).
    #[error(transparent)]
    Invalid(#[from] dsi_core::Error),
    /// The request does not fit the pool (no drafter for a speculative mode,
    /// a token outside the vocabulary, a prompt longer than the context).
    #[error("{0}")]
    Unfit(String),
    /// A worker thread could not be started.
    #[error("cannot start worker thread {name}: {source}")]
    Spawn {
        /// The worker's name.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`SchedError`].
pub type Result<T, E = SchedError> = std::result::Result<T, E>;
