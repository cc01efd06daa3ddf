//! What can go wrong in the browser engine, in words a page can show.

use dsi_models::ModelError;

/// Why the engine could not load or generate.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A file the model needs was not given.
    #[error("the {model} has no {file}: {what}")]
    MissingFile {
        /// `target` or `drafter`.
        model: &'static str,
        /// The file name.
        file: &'static str,
        /// What to give instead.
        what: &'static str,
    },
    /// A file could not be read as what it should be.
    #[error("the {model}'s {file} is unusable: {reason}")]
    BadFile {
        /// `target` or `drafter`.
        model: &'static str,
        /// The file name.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The model could not be built or run.
    #[error("{0}")]
    Model(#[from] ModelError),
    /// The request's settings are out of range.
    #[error("{0}")]
    Settings(String),
    /// The pair does not fit together.
    #[error("{0}")]
    Mismatch(String),
}

impl From<dsi_core::Error> for WebError {
    fn from(e: dsi_core::Error) -> Self {
        WebError::Settings(e.to_string())
    }
}
