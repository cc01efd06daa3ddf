//! Parsers and helpers shared by every command that loads a model.

use crate::exit::UsageError;
use dsi_models::device::{DeviceSpec, RunDtype};
use indicatif::{ProgressBar, ProgressStyle};

/// clap parser for `--backend`.
pub(crate) fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse().map_err(|e: dsi_models::ModelError| e.to_string())
}

/// clap parser for `--dtype`.
pub(crate) fn parse_dtype(s: &str) -> Result<RunDtype, String> {
    s.parse().map_err(|e: dsi_models::ModelError| e.to_string())
}

/// A progress bar for loading layers onto a device, on stderr.
pub(crate) fn load_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("loading {what}"));
    bar
}

/// The `(done, total)` callback model loading reports through, moving `bar`.
pub(crate) fn advance(bar: &ProgressBar) -> impl FnMut(usize, usize) + '_ {
    |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

/// Refuses a prompt that leaves no room to generate.
pub(crate) fn check_prompt_fits(prompt_tokens: usize, context: usize) -> anyhow::Result<()> {
    if prompt_tokens == 0 {
        return Err(
            UsageError("the prompt is empty after tokenization; give some text".into()).into(),
        );
    }
    if prompt_tokens >= context {
        return Err(UsageError(format!(
            "the prompt is {prompt_tokens} tokens, but the model's context is {context}: shorten the prompt"
        ))
        .into());
    }
    Ok(())
}
