//! The pool's cost profile on disk, so only the first start on a machine
//! pays for measuring it.
//!
//! A profile belongs to one pool: the model files (names, sizes and
//! modification times of the target's and drafter's folders), where each
//! worker runs and in which dtype, the numerics, any latency emulation, the
//! host's cores and this build. All of it goes into a key; the file is named
//! by the key's hash and holds the key, so a changed model, device or
//! setting finds no profile (or one whose key differs) and measures anew.

use anyhow::Context;
use dsi_core::tune::CostProfile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped when `CostProfile`, the measurement or the simulation behind the
/// saved predictions changes.
const FORMAT: u32 = 2;

/// What a profile file holds: the pool's key, its profile, and the
/// predictions `auto` simulated from it (so a later start simulates
/// nothing either).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Saved {
    key: String,
    pub(crate) profile: CostProfile,
    #[serde(default)]
    pub(crate) columns: Vec<Vec<f64>>,
}

/// Where profiles live: `$XDG_CACHE_HOME/dsi/profiles`, else
/// `~/.cache/dsi/profiles`.
pub(crate) fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dsi").join("profiles"))
}

/// The key of a pool: `parts` (devices, dtypes, settings) and what the
/// model folders hold.
pub(crate) fn key(models: &[&Path], parts: &[String]) -> anyhow::Result<String> {
    let mut key = format!(
        "dsi {} profile {FORMAT}; cores {}",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for part in parts {
        key.push_str("; ");
        key.push_str(part);
    }
    for dir in models {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("reading {}", dir.display()))?;
        key.push_str(&format!("; {}:", dir.display()));
        // A folder's files, or the one file (a GGUF checkpoint).
        let mut files: Vec<(String, std::fs::Metadata)> = if dir.is_file() {
            let meta =
                std::fs::metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
            vec![(String::new(), meta)]
        } else {
            std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|entry| entry.ok())
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().ok()?,
                    ))
                })
                .collect()
        };
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in files {
            if !meta.is_file() {
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            key.push_str(&format!(" {name}={}@{modified}", meta.len()));
        }
    }
    Ok(key)
}

/// The file a key's profile lives in.
pub(crate) fn file(dir: &Path, key: &str) -> PathBuf {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    dir.join(format!("{hash:016x}.json"))
}

/// The saved profile for `key`, if there is one (a missing, unreadable or
/// foreign file is no profile).
pub(crate) fn load(dir: &Path, key: &str) -> Option<Saved> {
    let text = std::fs::read_to_string(file(dir, key)).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    (saved.key == key).then_some(saved)
}

/// Saves `profile` and its predictions under `key`; returns the file
/// written.
pub(crate) fn save(
    dir: &Path,
    key: &str,
    profile: &CostProfile,
    columns: Vec<Vec<f64>>,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = file(dir, key);
    let saved = Saved {
        key: key.to_string(),
        profile: profile.clone(),
        columns,
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&saved)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> CostProfile {
        CostProfile::independent(vec![2.0, 2.5], 0.3, 2)
    }

    /// A fresh folder with a model folder (one weights file) and the
    /// cache folder's path inside.
    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        let root = std::env::temp_dir().join(format!("dsi-profile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let model = root.join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("model.safetensors"), b"weights").unwrap();
        (model, root.join("cache"))
    }

    #[test]
    fn written_once_then_reused() {
        let (model, cache) = scratch("reuse");
        let key = key(&[&model], &["cpu f32 x2".into()]).unwrap();
        assert_eq!(load(&cache, &key), None);
        let path = save(&cache, &key, &profile(), vec![vec![1.0]]).unwrap();
        assert!(path.starts_with(&cache));
        let saved = load(&cache, &key).unwrap();
        assert_eq!((saved.profile, saved.columns), (profile(), vec![vec![1.0]]));
        // The same pool computes the same key: a later start reuses it.
        assert_eq!(key, super::key(&[&model], &["cpu f32 x2".into()]).unwrap());
    }

    #[test]
    fn changed_model_files_or_devices_invalidate_it() {
        let (model, cache) = scratch("invalidate");
        let before = key(&[&model], &["cpu f32 x2".into()]).unwrap();
        save(&cache, &before, &profile(), Vec::new()).unwrap();
        // Another device or dtype: another key, no profile.
        let device = key(&[&model], &["wgpu f16 x2".into()]).unwrap();
        assert_ne!(device, before);
        assert_eq!(load(&cache, &device), None);
        // New weights (another size): another key, no profile.
        std::fs::write(model.join("model.safetensors"), b"other weights").unwrap();
        let weights = key(&[&model], &["cpu f32 x2".into()]).unwrap();
        assert_ne!(weights, before);
        assert_eq!(load(&cache, &weights), None);
        // A file whose stored key differs (a hash collision, or edited by
        // hand) is not taken for this pool's.
        std::fs::write(
            file(&cache, &weights),
            std::fs::read(file(&cache, &before)).unwrap(),
        )
        .unwrap();
        assert_eq!(load(&cache, &weights), None);
    }
}
