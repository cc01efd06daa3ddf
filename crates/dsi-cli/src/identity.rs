//! A checkpoint's identity: hashes of its config, tokenizer and weights,
//! which a worker states in its handshake and a coordinator compares, so a
//! drafter with another tokenizer or a target with other weights is refused
//! before it computes anything. A folder hashes its files; a GGUF file its
//! architecture, its tokenizer metadata and its bytes.

use anyhow::Context;
use dsi_models::checkpoint::Checkpoint;
use dsi_remote::ModelIdentity;
use std::io::Read;
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

/// The identity of a checkpoint folder or GGUF file ([`of_folder`],
/// [`of_gguf`]).
pub(crate) fn of_checkpoint(path: &Path) -> anyhow::Result<ModelIdentity> {
    match Checkpoint::gguf_file(path)? {
        Some(file) => of_gguf(&file),
        None => of_folder(path),
    }
}

/// A GGUF file's hashes: its configuration as the engine reads it, its
/// tokenizer metadata (vocabulary, merges, types, pre-tokenizer), and the
/// whole file for the weights.
pub(crate) fn of_gguf(path: &Path) -> anyhow::Result<ModelIdentity> {
    let (config, tokenizer) = gguf_header_hashes(path)?;
    Ok(ModelIdentity {
        config,
        tokenizer,
        weights: file_hash(path)?,
    })
}

/// The configuration and tokenizer hashes of a GGUF file, from its header
/// alone (the weights are not read).
fn gguf_header_hashes(path: &Path) -> anyhow::Result<(String, String)> {
    let file = dsi_models::checkpoint::gguf::GgufFile::open(path)?;
    let mut config = Xxh3::new();
    config.update(format!("{:?}", file.config()).as_bytes());
    let mut tokenizer = Xxh3::new();
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
    ] {
        tokenizer.update(format!("{key}={:?};", file.metadata(key)).as_bytes());
    }
    Ok((
        format!("{:032x}", config.digest128()),
        format!("{:032x}", tokenizer.digest128()),
    ))
}

/// The hashes (xxh3-128, hex) of `dir`'s `config.json`, `tokenizer.json`
/// and every `*.safetensors` file in name order (names and bytes). Reads
/// every weight once: about a second per few GB.
pub(crate) fn of_folder(dir: &Path) -> anyhow::Result<ModelIdentity> {
    let mut weights: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    weights.sort();
    let mut hasher = Xxh3::new();
    for path in &weights {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hash_file(&mut hasher, path)?;
    }
    Ok(ModelIdentity {
        config: file_hash(&dir.join("config.json"))?,
        tokenizer: file_hash(&dir.join("tokenizer.json"))?,
        weights: format!("{:032x}", hasher.digest128()),
    })
}

/// Only the tokenizer's hash (all a coordinator needs of a drafter it does
/// not run).
pub(crate) fn tokenizer_of(path: &Path) -> anyhow::Result<String> {
    match Checkpoint::gguf_file(path)? {
        Some(file) => Ok(gguf_header_hashes(&file)?.1),
        None => file_hash(&path.join("tokenizer.json")),
    }
}

/// Only the config's hash.
pub(crate) fn config_of(path: &Path) -> anyhow::Result<String> {
    match Checkpoint::gguf_file(path)? {
        Some(file) => Ok(gguf_header_hashes(&file)?.0),
        None => file_hash(&path.join("config.json")),
    }
}

fn file_hash(path: &Path) -> anyhow::Result<String> {
    let mut hasher = Xxh3::new();
    hash_file(&mut hasher, path)?;
    Ok(format!("{:032x}", hasher.digest128()))
}

fn hash_file(hasher: &mut Xxh3, path: &Path) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..read]);
    }
}
