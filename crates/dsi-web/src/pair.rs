//! A target and a drafter loaded from bytes: the files a page fetched (the
//! bundled pair by default) or the user dropped, each model's
//! `config.json`, `*.safetensors`, `tokenizer.json` and, when present,
//! `generation_config.json`.

use crate::driver::{Outcome, Progress, Worker, generate};
use crate::error::WebError;
use crate::options::GenerateOptions;
use dsi_core::TokenId;
use dsi_models::checkpoint::{GenerationDefaults, SafetensorsFiles, TextTokenizer};
use dsi_models::device::{Backend, DType};
use dsi_models::pair::{PairSide, pool_vocab};
use dsi_models::transformer::LoadedModel;
use dsi_models::{ModelConfig, Session};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One model's files by name.
#[derive(Debug, Clone, Default)]
pub struct ModelFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl ModelFiles {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file; a path keeps only its last component, so a dropped
    /// folder's files count by name.
    pub fn insert(&mut self, name: &str, bytes: Vec<u8>) {
        let name = name.rsplit('/').next().unwrap_or(name);
        self.files.insert(name.to_string(), bytes);
    }

    /// The files of a checkpoint folder on disk (native tests and tools).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &Path) -> std::io::Result<Self> {
        let mut files = Self::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".json") || name.ends_with(".safetensors") {
                files.insert(name, std::fs::read(&path)?);
            }
        }
        Ok(files)
    }

    /// The names given, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    fn text(&self, model: &'static str, file: &'static str) -> Result<Option<&str>, WebError> {
        self.files
            .get(file)
            .map(|bytes| {
                std::str::from_utf8(bytes).map_err(|e| WebError::BadFile {
                    model,
                    file: file.into(),
                    reason: format!("not UTF-8 text ({e})"),
                })
            })
            .transpose()
    }

    fn required(
        &self,
        model: &'static str,
        file: &'static str,
        what: &'static str,
    ) -> Result<&[u8], WebError> {
        self.files
            .get(file)
            .map(Vec::as_slice)
            .ok_or(WebError::MissingFile { model, file, what })
    }
}

/// One model of the pair, on its device.
struct Loaded<B: Backend> {
    model: Arc<LoadedModel<B>>,
    tokenizer: TextTokenizer,
    eos: Vec<TokenId>,
}

/// Builds one model from its files, which it consumes: the weights' bytes
/// move into the tensor reader rather than being copied (a browser holds
/// them once).
fn load<B: Backend>(
    role: &'static str,
    files: ModelFiles,
    device: &B::Device,
    dtype: DType,
) -> Result<Loaded<B>, WebError> {
    let config = files
        .text(role, "config.json")?
        .ok_or(WebError::MissingFile {
            model: role,
            file: "config.json",
            what: "give the checkpoint's config.json",
        })?;
    let config = ModelConfig::from_json(config)?;
    let tokenizer = TextTokenizer::from_bytes(files.required(
        role,
        "tokenizer.json",
        "give the checkpoint's tokenizer.json",
    )?)?;
    let generation = GenerationDefaults::from_json(
        files.text(role, "generation_config.json")?,
        Path::new("generation_config.json"),
        &config,
    )?;
    let shards: Vec<(String, Vec<u8>)> = files
        .files
        .into_iter()
        .filter(|(name, _)| name.ends_with(".safetensors"))
        .collect();
    if shards.is_empty() {
        return Err(WebError::MissingFile {
            model: role,
            file: "model.safetensors",
            what: "give the weights (every *.safetensors file of the checkpoint)",
        });
    }
    let weights = SafetensorsFiles::from_bytes(shards)?;
    let model = LoadedModel::from_weights(&config, &weights, device, dtype, |_, _| {})?;
    Ok(Loaded {
        model: Arc::new(model),
        tokenizer,
        eos: generation.eos_token_ids,
    })
}

/// A target and, optionally, a drafter over the same vocabulary, on one
/// device.
pub struct Pair<B: Backend> {
    target: Loaded<B>,
    /// Token ids the pair samples and verifies on (see `dsi_models::pair`).
    vocab: usize,
    drafter: Option<Arc<LoadedModel<B>>>,
}

impl<B: Backend> Pair<B> {
    /// Builds the target (and the drafter) from their files on `device` in
    /// `dtype`. The drafter must share the target's tokenizer; their
    /// embeddings may be padded to different sizes.
    pub fn load(
        target: ModelFiles,
        drafter: Option<ModelFiles>,
        device: &B::Device,
        dtype: DType,
    ) -> Result<Self, WebError> {
        let target = load::<B>("target", target, device, dtype)?;
        let drafter = drafter
            .map(|files| load::<B>("drafter", files, device, dtype))
            .transpose()?;
        let target_side = PairSide {
            config: &target.model.config,
            tokenizer: &target.tokenizer,
        };
        let drafter_side = drafter.as_ref().map(|d| PairSide {
            config: &d.model.config,
            tokenizer: &d.tokenizer,
        });
        let vocab =
            pool_vocab(target_side, drafter_side).map_err(|e| WebError::Mismatch(e.to_string()))?;
        Ok(Self {
            target,
            vocab,
            drafter: drafter.map(|d| d.model),
        })
    }

    /// The target's tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.target.tokenizer
    }

    /// Positions the pair can attend to: the smaller model's context.
    pub fn context(&self) -> usize {
        let target = self.target.model.config.max_context;
        self.drafter
            .as_ref()
            .map_or(target, |d| d.config.max_context.min(target))
    }

    /// Parameters of the target and of the drafter.
    pub fn parameters(&self) -> (usize, Option<usize>) {
        (
            self.target.model.config.num_parameters(),
            self.drafter.as_ref().map(|d| d.config.num_parameters()),
        )
    }

    /// Runs one request: fresh workers (empty caches) over the shared
    /// weights, `options.targets` targets on the pair's device.
    pub async fn generate(
        &self,
        options: &GenerateOptions,
        request: u64,
        on: impl FnMut(Progress<'_>),
    ) -> Result<Outcome, WebError> {
        let prompt = self.target.tokenizer.encode(&options.prompt)?;
        let context = self.context();
        let plan = options.plan(prompt.len(), context, &self.target.eos)?;
        // Caches grow by segments with what they hold, so the whole
        // context costs nothing up front.
        let capacity = context;
        let mut drafter = self.drafter.as_ref().map(|model| {
            Worker::new(
                "drafter",
                Session::new(model.clone(), capacity).with_vocab(self.vocab),
            )
        });
        let mut targets: Vec<Worker<Session<B>>> = (0..plan.servers)
            .map(|i| {
                Worker::new(
                    format!("target {i}"),
                    Session::new(self.target.model.clone(), capacity).with_vocab(self.vocab),
                )
            })
            .collect();
        generate(drafter.as_mut(), &mut targets, request, plan, prompt, on).await
    }
}
