//! What the operator sets: the served model's name, defaults and limits.

use crate::auth::ApiKeys;
use crate::chat::ChatTemplate;
use dsi_core::TokenId;
use dsi_core::schedule::ModeSetting;
use std::time::Duration;

/// Settings of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name `/v1/models` lists and requests must name (or omit).
    pub model_name: String,
    /// The algorithm when a request names none.
    pub mode: ModeSetting,
    /// Drafts per verification job when a request names none.
    pub lookahead: usize,
    /// End-of-sequence tokens.
    pub eos: Vec<TokenId>,
    /// The model's vocabulary size, to check token ids of prompts and
    /// `logit_bias` before a generation starts (`None`: the model refuses
    /// unknown ids when it meets them).
    pub vocab: Option<usize>,
    /// Positions each worker's cache holds: prompt plus new tokens.
    pub context: usize,
    /// Longest prompt, in tokens.
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Generations running at once.
    pub max_running: usize,
    /// Requests waiting for a slot before 429s.
    pub max_queue: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Time a request may take from arrival to its last token.
    pub request_timeout: Duration,
    /// After SIGTERM: how long in-flight generations may still run.
    pub drain_grace: Duration,
    /// `Retry-After` of a 429, in seconds.
    pub retry_after_s: u64,
    /// How chat messages become a prompt.
    pub chat: ChatTemplate,
    /// API keys; empty: no key needed.
    pub api_keys: ApiKeys,
    /// Whether `/metrics` and `/healthz` need a key too.
    pub protect_metrics: bool,
    /// Emulated target TTFT,TPOT in ms, shown by the dashboard.
    pub emulated_target_ms: Option<(f64, f64)>,
    /// Emulated drafter TTFT,TPOT in ms, shown by the dashboard.
    pub emulated_drafter_ms: Option<(f64, f64)>,
    /// What `/play` serves from disk; `None`: the page only.
    pub play: Option<crate::routes::play::PlayFiles>,
}

impl ServerConfig {
    /// Defaults around a model whose caches hold `context` positions.
    pub fn new(model_name: impl Into<String>, context: usize) -> Self {
        Self {
            model_name: model_name.into(),
            mode: ModeSetting::Fixed(dsi_core::schedule::Mode::Dsi),
            lookahead: 5,
            eos: Vec::new(),
            vocab: None,
            context,
            max_prompt_tokens: context.saturating_sub(1),
            max_tokens: context.saturating_sub(1),
            default_max_tokens: 128.min(context.saturating_sub(1)).max(1),
            max_running: 16,
            max_queue: 48,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(300),
            drain_grace: Duration::from_secs(30),
            retry_after_s: 1,
            chat: ChatTemplate::default(),
            api_keys: ApiKeys::default(),
            protect_metrics: false,
            emulated_target_ms: None,
            emulated_drafter_ms: None,
            play: None,
        }
    }
}
