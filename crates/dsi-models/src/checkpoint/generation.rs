//! `generation_config.json`: extra end-of-sequence ids.

use crate::config::ModelConfig;
use crate::{ModelError, Result};
use std::path::Path;

/// What a checkpoint says about ending a generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationDefaults {
    /// Every id that ends a generation (config and generation config merged).
    pub eos_token_ids: Vec<u32>,
}

impl GenerationDefaults {
    /// Merges `config.json`'s EOS ids with `generation_config.json`'s, if any.
    pub fn load(dir: &Path, config: &ModelConfig) -> Result<Self> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Self::from_json(None, &path, config);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_json(Some(&text), &path, config)
    }

    /// [`GenerationDefaults::load`] from the text of
    /// `generation_config.json` (`None` when there is none), read from
    /// `path` (named in errors).
    pub fn from_json(text: Option<&str>, path: &Path, config: &ModelConfig) -> Result<Self> {
        let mut eos = config.eos_token_ids.clone();
        if let Some(text) = text {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| ModelError::Json {
                    path: path.to_path_buf(),
                    what: "generation configuration",
                    reason: e.to_string(),
                })?;
            let ids = match json.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => n.as_u64().into_iter().collect(),
                Some(serde_json::Value::Array(items)) => {
                    items.iter().filter_map(|v| v.as_u64()).collect()
                }
                _ => Vec::new(),
            };
            for id in ids {
                let id = id as u32;
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        Ok(Self { eos_token_ids: eos })
    }
}
