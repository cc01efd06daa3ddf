//! What a worker tells the coordinator in the handshake, and the checks a
//! coordinator makes before it sends a job.

use crate::pb;
use crate::wire::{WireError, footprint, footprint_from};
use dsi_core::cache_layout::CacheFootprint;

/// The protocol version both ends must speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a target on `device` (`cpu`, `cuda:1`, ...) computes with `dtype`
/// and `numerics`: the device's kind, dtype and numerics. Local and remote
/// targets are compared by it.
pub fn target_function(device: &str, dtype: &str, numerics: &str) -> String {
    let kind = device.split(':').next().unwrap_or(device);
    format!("{kind} {dtype} {numerics}")
}

/// Whether a worker drafts or verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRole {
    /// A target server.
    Target,
    /// The drafter.
    Drafter,
}

impl std::fmt::Display for WorkerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerRole::Target => "target",
            WorkerRole::Drafter => "drafter",
        })
    }
}

/// Hashes of a model's files: equal hashes mean the same model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelIdentity {
    /// Of `config.json`.
    pub config: String,
    /// Of `tokenizer.json`.
    pub tokenizer: String,
    /// Of the weights (every safetensors file, in name order).
    pub weights: String,
}

/// What a worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Target or drafter.
    pub role: WorkerRole,
    /// Its model.
    pub model: ModelIdentity,
    /// Its run dtype (`f32`, `bf16`, ...).
    pub dtype: String,
    /// Its device (`cpu`, `cuda:0`, ...).
    pub device: String,
    /// `invariant` or `fast`.
    pub numerics: String,
    /// Vocabulary size.
    pub vocab: usize,
    /// Positions one request's cache holds at most.
    pub context: usize,
    /// Bytes its caches may hold together.
    pub kv_budget_bytes: usize,
    /// How one request's cache grows (`None`: unbudgeted).
    pub footprint: Option<CacheFootprint>,
    /// The worker's version.
    pub version: String,
}

impl WorkerInfo {
    /// The handshake reply that says it.
    pub(crate) fn to_wire(&self) -> pb::HandshakeReply {
        pb::HandshakeReply {
            protocol: PROTOCOL_VERSION,
            role: match self.role {
                WorkerRole::Target => pb::Role::Target,
                WorkerRole::Drafter => pb::Role::Drafter,
            } as i32,
            model: Some(pb::ModelIdentity {
                config: self.model.config.clone(),
                tokenizer: self.model.tokenizer.clone(),
                weights: self.model.weights.clone(),
            }),
            dtype: self.dtype.clone(),
            device: self.device.clone(),
            numerics: self.numerics.clone(),
            vocab: self.vocab as u64,
            context: self.context as u64,
            kv_budget_bytes: self.kv_budget_bytes as u64,
            footprint: self.footprint.as_ref().map(footprint),
            version: self.version.clone(),
        }
    }

    /// What a handshake reply says.
    pub(crate) fn from_wire(reply: pb::HandshakeReply) -> Result<Self, WireError> {
        let size = |what, v: u64| {
            usize::try_from(v).map_err(|_| WireError::new(what, format!("{v} does not fit")))
        };
        let role = match pb::Role::try_from(reply.role) {
            Ok(pb::Role::Target) => WorkerRole::Target,
            Ok(pb::Role::Drafter) => WorkerRole::Drafter,
            _ => return Err(WireError::new("handshake", format!("role {}", reply.role))),
        };
        let model = reply
            .model
            .map(|m| ModelIdentity {
                config: m.config,
                tokenizer: m.tokenizer,
                weights: m.weights,
            })
            .ok_or_else(|| WireError::new("handshake", "no model identity"))?;
        Ok(Self {
            role,
            model,
            dtype: reply.dtype,
            device: reply.device,
            numerics: reply.numerics,
            vocab: size("vocabulary", reply.vocab)?,
            context: size("context", reply.context)?,
            kv_budget_bytes: size("KV budget", reply.kv_budget_bytes)?,
            footprint: reply.footprint.as_ref().map(footprint_from).transpose()?,
            version: reply.version,
        })
    }

    /// The function a target computes: device kind, dtype and numerics.
    /// Targets that differ in it would not give greedy DSI non-SI's tokens.
    pub fn function(&self) -> String {
        target_function(&self.device, &self.dtype, &self.numerics)
    }

    /// Why a worker that reconnects is not the one first met (another
    /// role, model, dtype or size), if it is not.
    pub fn differs_from(&self, first: &WorkerInfo) -> Option<String> {
        if self.role != first.role {
            return Some(format!(
                "it now serves a {} (was a {})",
                self.role, first.role
            ));
        }
        if self.model != first.model {
            return Some("it now serves another model (its files' hashes changed)".into());
        }
        if self.function() != first.function() {
            return Some(format!(
                "it now computes {} (was {})",
                self.function(),
                first.function()
            ));
        }
        if (self.vocab, self.context) != (first.vocab, first.context) {
            return Some(format!(
                "its vocabulary and context are now {} and {} (were {} and {})",
                self.vocab, self.context, first.vocab, first.context
            ));
        }
        None
    }
}
