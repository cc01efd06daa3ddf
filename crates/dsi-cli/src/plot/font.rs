//! Finds a TrueType font on this machine for text in bitmap and SVG plots.
//!
//! plotters measures text with the font it draws with, so both backends need
//! one. We look in `$DSI_FONT` first, then in the usual places of Debian,
//! Fedora, Arch and macOS, and register the first that parses.

use anyhow::{Context, bail};
use plotters::style::{FontStyle, register_font};
use std::sync::OnceLock;

/// The family name plots ask for.
pub(crate) const FAMILY: &str = "sans-serif";

const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

static REGISTERED: OnceLock<Result<String, String>> = OnceLock::new();

/// Registers a font as [`FAMILY`] once per process; returns its path.
pub(crate) fn ensure_registered() -> anyhow::Result<String> {
    let outcome = REGISTERED.get_or_init(|| register_first().map_err(|e| format!("{e:#}")));
    match outcome {
        Ok(path) => Ok(path.clone()),
        Err(message) => bail!("{message}"),
    }
}

fn register_first() -> anyhow::Result<String> {
    let from_env = std::env::var("DSI_FONT").ok();
    if let Some(path) = &from_env {
        register(path).with_context(|| format!("loading the font named by DSI_FONT ({path})"))?;
        return Ok(path.clone());
    }
    for path in CANDIDATES {
        if register(path).is_ok() {
            return Ok((*path).to_string());
        }
    }
    bail!(
        "no TrueType font found for the plot's text (looked in {}); \
         install one (Debian: apt-get install fonts-dejavu-core) or set DSI_FONT=/path/to/font.ttf",
        CANDIDATES.join(", ")
    )
}

fn register(path: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    // plotters keeps fonts for the whole process; one font, loaded once.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{path} is not a TrueType/OpenType font"))
}
