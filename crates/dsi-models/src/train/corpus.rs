//! The training corpus: text files, split by file into training and
//! held-out sets, tokenized into one stream each.

use crate::{ModelError, Result};
use dsi_core::TokenId;
use std::path::{Path, PathBuf};

/// Text files and which of them are held out.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Training files, sorted by path.
    pub train: Vec<PathBuf>,
    /// Held-out files: every `holdout_every`-th file in sorted order.
    pub held_out: Vec<PathBuf>,
}

impl Corpus {
    /// The files with extension `ext` directly inside `dir` (not its
    /// subfolders), sorted by name; every `holdout_every`-th one (the 1st,
    /// the 11th, ... for 10) is held out.
    pub fn scan(dir: &Path, ext: &str, holdout_every: usize) -> Result<Self> {
        let io = |source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        if files.len() < 2 {
            return Err(ModelError::InvalidConfig {
                field: "corpus",
                reason: format!(
                    "{} holds {} .{ext} file(s); training needs at least 2 (one is held out)",
                    dir.display(),
                    files.len()
                ),
            });
        }
        let every = holdout_every.max(2);
        let (held_out, train) = files
            .into_iter()
            .enumerate()
            .partition::<Vec<_>, _>(|(i, _)| i % every == 0);
        Ok(Self {
            train: train.into_iter().map(|(_, p)| p).collect(),
            held_out: held_out.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

/// Reads files as text (invalid UTF-8 is replaced, not fatal).
pub fn read_texts(files: &[PathBuf]) -> Result<Vec<String>> {
    files
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .map_err(|source| ModelError::Io {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// Tokenizes documents into one stream, each followed by `separator`.
pub fn token_stream(
    tokenizer: &crate::checkpoint::TextTokenizer,
    texts: &[String],
    separator: TokenId,
) -> Result<Vec<TokenId>> {
    let mut stream = Vec::new();
    for text in texts {
        stream.extend(tokenizer.encode(text)?);
        stream.push(separator);
    }
    Ok(stream)
}
