//! The HTTP routes.

pub mod completions;
pub mod dashboard;
pub mod ops;
pub mod play;
pub mod tokenize;
