//! The coordinator's side of remote workers: connecting to each `dsi
//! worker` a pool names and refusing, before any job, one that would break
//! the pool's guarantees: a drafter whose tokenizer differs from the
//! target's, a target that runs another model than `--model` or other
//! weights than the other targets.

use crate::exit::UsageError;
use crate::identity;
use anyhow::Context;
use dsi_remote::{AuthToken, ConnectOptions, RemoteError, RemoteWorker, WorkerRole};
use std::path::{Path, PathBuf};

/// Connects to a pool's remote workers and checks what they serve.
pub(crate) struct RemoteWorkers {
    options: ConnectOptions,
    target_dir: PathBuf,
    vocab: usize,
    /// Whether some targets run in this process (their weights are then
    /// hashed to compare with the remote ones).
    local_targets: bool,
    /// The target folder's identity, once computed.
    target: Option<dsi_remote::ModelIdentity>,
    /// The first remote target's weights, and its address.
    first_weights: Option<(String, String)>,
}

impl RemoteWorkers {
    /// Ready to connect with the workers' shared secret and certificate
    /// authority, if any.
    pub(crate) fn new(
        token_file: Option<&Path>,
        tls_ca: Option<&Path>,
        target_dir: PathBuf,
        vocab: usize,
        local_targets: bool,
    ) -> anyhow::Result<Self> {
        let token: Option<AuthToken> = token_file.map(crate::worker::read_token).transpose()?;
        let tls_ca = tls_ca
            .map(|path| crate::worker::read_file(path, "CA certificate"))
            .transpose()?;
        Ok(Self {
            options: ConnectOptions {
                token,
                tls_ca,
                ..ConnectOptions::default()
            },
            target_dir,
            vocab,
            local_targets,
            target: None,
            first_weights: None,
        })
    }

    fn connect(&self, url: &str, role: WorkerRole) -> anyhow::Result<RemoteWorker> {
        let worker = dsi_remote::connect(url, self.options.clone()).map_err(|e| match e {
            RemoteError::Unreachable { .. } => anyhow::Error::from(e),
            other => UsageError(other.to_string()).into(),
        })?;
        let info = &worker.info;
        if info.role != role {
            return Err(UsageError(format!(
                "worker {url} serves a {} where this pool needs a {role}: start it with --role {role}",
                info.role
            ))
            .into());
        }
        if info.vocab != self.vocab {
            return Err(UsageError(format!(
                "worker {url}'s vocabulary ({}) differs from the target's ({}): it must share the target's tokenizer",
                info.vocab, self.vocab
            ))
            .into());
        }
        Ok(worker)
    }

    fn target_identity(&mut self) -> anyhow::Result<&dsi_remote::ModelIdentity> {
        if self.target.is_none() {
            let identity = if self.local_targets {
                identity::of_checkpoint(&self.target_dir)?
            } else {
                dsi_remote::ModelIdentity {
                    config: identity::config_of(&self.target_dir)?,
                    tokenizer: identity::tokenizer_of(&self.target_dir)?,
                    weights: String::new(),
                }
            };
            self.target = Some(identity);
        }
        self.target.as_ref().context("the target's identity")
    }

    /// A remote target server, checked against `--model` and the other
    /// targets.
    pub(crate) fn target(&mut self, url: &str) -> anyhow::Result<RemoteWorker> {
        let worker = self.connect(url, WorkerRole::Target)?;
        let dir = self.target_dir.display().to_string();
        let local_targets = self.local_targets;
        let ours = self.target_identity()?.clone();
        let theirs = &worker.info.model;
        if theirs.config != ours.config || theirs.tokenizer != ours.tokenizer {
            return Err(UsageError(format!(
                "worker {url} serves another model than {dir} (its configuration or tokenizer differ): \
                 start it with --model pointing at the same checkpoint"
            ))
            .into());
        }
        let differs = |other: &str| {
            UsageError(format!(
                "worker {url}'s target weights differ from {other}'s: every target server must run the \
                 same weights, or greedy DSI would not emit non-SI's tokens"
            ))
        };
        if local_targets && theirs.weights != ours.weights {
            return Err(differs(&dir).into());
        }
        match &self.first_weights {
            Some((first, weights)) if *weights != theirs.weights => {
                return Err(differs(first).into());
            }
            Some(_) => {}
            None => self.first_weights = Some((url.to_owned(), theirs.weights.clone())),
        }
        Ok(worker)
    }

    /// A remote drafter, checked to share the target's tokenizer.
    pub(crate) fn drafter(&mut self, url: &str) -> anyhow::Result<RemoteWorker> {
        let worker = self.connect(url, WorkerRole::Drafter)?;
        let ours = identity::tokenizer_of(&self.target_dir)?;
        if worker.info.model.tokenizer != ours {
            return Err(UsageError(format!(
                "worker {url}'s drafter has another tokenizer than the target in {}: a drafter must \
                 share the target's tokenizer",
                self.target_dir.display()
            ))
            .into());
        }
        Ok(worker)
    }
}
