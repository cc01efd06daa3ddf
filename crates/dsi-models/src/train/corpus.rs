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
    /// Held-out files: in each folder, every `holdout_every`-th file in
    /// sorted order.
    pub held_out: Vec<PathBuf>,
}

/// Which files of a folder make the corpus.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Extension of the files to read (without the dot).
    pub ext: String,
    /// Read subfolders too.
    pub recursive: bool,
    /// Names of subfolders to skip (tests, generated tables), at any depth.
    pub exclude_dirs: Vec<String>,
}

impl Corpus {
    /// The files `selection` picks in `dir`. In each folder, its files
    /// sorted by name, every `holdout_every`-th one (the 1st, the 11th, ...
    /// for 10) is held out: whole files, never parts of one, and a file's
    /// split does not change when other folders join the corpus.
    pub fn scan(dir: &Path, selection: &Selection, holdout_every: usize) -> Result<Self> {
        let mut folders = Vec::new();
        collect(dir, selection, &mut folders)?;
        let every = holdout_every.max(2);
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for files in folders {
            for (i, file) in files.into_iter().enumerate() {
                if i % every == 0 {
                    held_out.push(file);
                } else {
                    train.push(file);
                }
            }
        }
        let total = train.len() + held_out.len();
        if total >= 2 && train.is_empty() {
            // Several files, each the first of its folder.
            return Err(ModelError::InvalidConfig {
                field: "corpus",
                reason: format!(
                    "{} holds {total} .{} files, each alone in its folder, and every folder \
                     holds out its first file: none is left to train on; gather the files \
                     in fewer folders",
                    dir.display(),
                    selection.ext,
                ),
            });
        }
        if train.is_empty() || held_out.is_empty() {
            return Err(ModelError::InvalidConfig {
                field: "corpus",
                reason: format!(
                    "{} holds {total} .{} file(s){}; training needs at least 2 (one is held out)",
                    dir.display(),
                    selection.ext,
                    if selection.recursive {
                        ""
                    } else {
                        " directly inside it (--recursive reads its subfolders too)"
                    }
                ),
            });
        }
        train.sort();
        held_out.sort();
        Ok(Self { train, held_out })
    }
}

/// Appends the sorted files of `dir` (one list per folder, folders in
/// sorted order) that `selection` picks.
fn collect(dir: &Path, selection: &Selection, folders: &mut Vec<Vec<PathBuf>>) -> Result<()> {
    let io = |source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let files: Vec<PathBuf> = entries
        .iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == selection.ext.as_str()))
        .cloned()
        .collect();
    if !files.is_empty() {
        folders.push(files);
    }
    if selection.recursive {
        for sub in entries.iter().filter(|p| p.is_dir()) {
            let name = sub.file_name().map(|n| n.to_string_lossy().into_owned());
            let skipped = name.as_ref().is_none_or(|n| {
                n.starts_with('.') || selection.exclude_dirs.iter().any(|x| x == n)
            });
            // Symbolic links to folders are skipped: they may loop.
            if !skipped && !sub.is_symlink() {
                collect(sub, selection, folders)?;
            }
        }
    }
    Ok(())
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
