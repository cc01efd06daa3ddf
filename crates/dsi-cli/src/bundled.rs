//! The bundled model pair in `models/pystd`: a target and a drafter the
//! project trained with `dsi train` on CPython's standard library (see its
//! `MODEL_CARD.md`), and held-out prompts. Commands use it when no model is
//! named. `$DSI_BUNDLED` points elsewhere (an installed binary, say).

use std::path::PathBuf;

/// The folder of the pair.
pub(crate) fn dir() -> PathBuf {
    std::env::var_os("DSI_BUNDLED").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/pystd")),
        PathBuf::from,
    )
}

/// The bundled target checkpoint.
pub(crate) fn target() -> PathBuf {
    dir().join("target")
}

/// The bundled drafter checkpoint.
pub(crate) fn drafter() -> PathBuf {
    dir().join("drafter")
}

/// The shipped held-out prompts (JSON lines with a `prompt` field).
pub(crate) fn prompts() -> PathBuf {
    dir().join("prompts.jsonl")
}
