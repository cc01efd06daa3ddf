//! From a request body to a scheduler request: the JSON parsed, every field checked, every
//! refusal a 4xx that names the field and says what would be accepted.

use crate::error::ApiError;
use crate::openai::CommonFields;
use crate::state::State;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use dsi_core::sampling::{Decoding, SamplingParams};
use dsi_core::schedule::ModeSetting;
use dsi_sched::Request;
use serde::de::DeserializeOwned;

/// Drafts per verification job a request may ask for.
pub const MAX_LOOKAHEAD: usize = 64;
/// Stop strings per request, as OpenAI allows.
pub const MAX_STOPS: usize = 4;

/// A request the scheduler can run, plus what the response needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The scheduler's request.
    pub request: Request,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Send SSE chunks.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
}

/// A seed for a request that names none: different for every request (so
/// two unseeded sampled requests differ), and returned in `usage.seed` so
/// the response can be replayed. `RandomState` is seeded from the OS once
/// per process and stepped per instance; the clock and a counter make each
/// draw distinct even where it is not. Below 2^53, so it survives a
/// JavaScript client's numbers.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.finish() & ((1 << 53) - 1)
}

/// Checks `fields` and the prompt text against the server's limits.
pub fn prepare(state: &State, fields: CommonFields, prompt: &str) -> Result<Prepared, ApiError> {
    let config = &state.config;
    if let Some(model) = &fields.model
        && model != &config.model_name
    {
        return Err(ApiError::unknown_model(model, &config.model_name));
    }
    if let Some(n) = fields.n
        && n != 1
    {
        return Err(ApiError::invalid_param(
            "n",
            format!(
                "n = {n} is not supported: this server returns one choice per request (n = 1); send several requests instead"
            ),
        ));
    }
    let max_tokens = fields
        .max_completion_tokens
        .or(fields.max_tokens)
        .map_or(config.default_max_tokens, |m| m as usize);
    if max_tokens == 0 || max_tokens > config.max_tokens {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!(
                "max_tokens = {max_tokens} is out of range: ask for 1 to {}",
                config.max_tokens
            ),
        ));
    }
    let temperature = fields.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid_param(
            "temperature",
            format!("temperature = {temperature} is out of range: use 0 (greedy) to 2"),
        ));
    }
    if let Some(top_p) = fields.top_p
        && !(top_p > 0.0 && top_p <= 1.0)
    {
        return Err(ApiError::invalid_param(
            "top_p",
            format!("top_p = {top_p} is out of range: use a value in (0, 1]"),
        ));
    }
    if fields.top_k == Some(0) {
        return Err(ApiError::invalid_param(
            "top_k",
            "top_k = 0 keeps no token: use at least 1",
        ));
    }
    let stop = fields.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOPS || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param(
            "stop",
            format!("stop takes up to {MAX_STOPS} non-empty strings"),
        ));
    }
    let mode = match &fields.mode {
        Some(m) => m
            .parse::<ModeSetting>()
            .map_err(|e| ApiError::invalid_param("mode", e.to_string()))?,
        None => config.mode,
    };
    if mode == ModeSetting::Auto && state.pool.tuning().is_none() {
        return Err(ApiError::invalid_param(
            "mode",
            "this server has no cost profile for mode auto: use dsi, si or nonsi".to_string(),
        ));
    }
    if matches!(mode, ModeSetting::Fixed(m) if m.drafts()) && !state.pool.has_drafter() {
        return Err(ApiError::invalid_param(
            "mode",
            format!("mode {mode} needs a drafter and this server has none: use nonsi"),
        ));
    }
    let k = fields.lookahead.map_or(config.lookahead, |k| k as usize);
    if k == 0 || k > MAX_LOOKAHEAD {
        return Err(ApiError::invalid_param(
            "lookahead",
            format!("lookahead = {k} is out of range: use 1 to {MAX_LOOKAHEAD}"),
        ));
    }
    let targets = match fields.targets {
        Some(n) if n == 0 || n as usize > state.pool.targets() => {
            return Err(ApiError::invalid_param(
                "targets",
                format!(
                    "targets = {n} is out of range: this server has {} target servers",
                    state.pool.targets()
                ),
            ));
        }
        other => other.map(|n| n as usize),
    };
    let params = SamplingParams {
        temperature,
        top_k: fields.top_k.map(|k| k as usize),
        top_p: fields.top_p,
        seed: fields.seed.unwrap_or_else(fresh_seed),
    };
    let decoding = Decoding::new(params, fields.speculative)
        .map_err(|e| ApiError::invalid(format!("invalid sampling parameters: {e}")))?;
    let prompt = state.codec.encode(prompt).map_err(|e| {
        ApiError::invalid_param("prompt", format!("the prompt cannot be tokenized: {e}"))
    })?;
    if prompt.is_empty() {
        return Err(ApiError::invalid_param(
            "prompt",
            "the prompt is empty: send some text",
        ));
    }
    if prompt.len() > config.max_prompt_tokens {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "the prompt is {} tokens; this server takes at most {}: shorten it",
                prompt.len(),
                config.max_prompt_tokens
            ),
        ));
    }
    if prompt.len() + max_tokens > config.context {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!(
                "the prompt ({} tokens) plus max_tokens ({max_tokens}) exceeds the context of {} tokens: lower max_tokens to {} or shorten the prompt",
                prompt.len(),
                config.context,
                config.context - prompt.len()
            ),
        ));
    }
    let request = Request {
        prompt,
        mode,
        k,
        max_new_tokens: max_tokens,
        eos: config.eos.clone(),
        decoding,
        targets,
    };
    // A request that could never get its KV memory is refused now, before
    // a stream's 200 goes out; one that must wait for it queues.
    state
        .pool
        .check_memory(&request)
        .map_err(|e| ApiError::invalid_param("max_tokens", e.to_string()))?;
    Ok(Prepared {
        request,
        stop,
        stream: fields.stream,
        include_usage: fields.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The body as `T`, or a 400/413 that says what is wrong with it.
pub fn parse<T: DeserializeOwned>(
    state: &State,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    if state.shutdown.draining() {
        return Err(ApiError::draining());
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.config.max_body_bytes)
        } else {
            ApiError::invalid(format!("the request body cannot be read: {rejection}"))
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::invalid(format!("the request does not match the schema: {e}"))
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::invalid(format!("the request body is not valid JSON: {e}"))
            }
        }
    })
}
