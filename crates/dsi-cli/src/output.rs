//! How a command prints its result.

use clap::ValueEnum;

/// Output format of a command's result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object.
    Json,
}
