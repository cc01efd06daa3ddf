//! From a request body to a scheduler request: the JSON parsed, every field checked, every
//! refusal a 4xx that names the field and says what would be accepted.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::fields;
use crate::openai::{CommonFields, Endpoint};
use crate::state::State;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use dsi_core::TokenId;
use dsi_core::sampling::{Decoding, LogitsProcessors, MAX_TOP_LOGPROBS, SamplingParams};
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
    /// Report log probabilities (the request's decoding computes them).
    pub logprobs: bool,
    /// Text to put before the completion (`echo`).
    pub echo: Option<String>,
}

/// A prompt as a request gives it.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Text, tokenized here.
    Text(String),
    /// Token ids, checked against the vocabulary.
    Tokens(Vec<TokenId>),
}

/// What each endpoint adds to the shared fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// Log probabilities with this many alternatives per token.
    pub logprobs: Option<u32>,
    /// Echo the prompt before the completion (completions only).
    pub echo: bool,
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

/// Checks `fields` and the prompt against the server's limits.
pub fn prepare(
    state: &State,
    fields: CommonFields,
    prompt: Prompt,
    extras: Extras,
) -> Result<Prepared, ApiError> {
    let config = &state.config;
    check_model(config, fields.model.as_deref())?;
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
    let processors = processors(&fields, config)?;
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
    let mut decoding = Decoding::new(params, fields.speculative)
        .map_err(|e| ApiError::invalid(format!("invalid sampling parameters: {e}")))?;
    let eos = if fields.ignore_eos {
        Vec::new()
    } else {
        config.eos.clone()
    };
    decoding = decoding
        .with_processors(processors, config.vocab.unwrap_or(usize::MAX))
        .map_err(|e| processor_error(&e))?;
    if let Some(top) = extras.logprobs {
        decoding = decoding.with_logprobs(top as usize).map_err(|_| {
            ApiError::invalid_param(
                "top_logprobs",
                format!("{top} alternatives per token asked: ask for at most {MAX_TOP_LOGPROBS}"),
            )
        })?;
    }
    let (echo, prompt) = match prompt {
        Prompt::Text(text) => {
            let tokens = state.codec.encode(&text).map_err(|e| {
                ApiError::invalid_param("prompt", format!("the prompt cannot be tokenized: {e}"))
            })?;
            (text, tokens)
        }
        Prompt::Tokens(tokens) => {
            check_token_ids(config, &tokens, "prompt")?;
            let text = if extras.echo {
                state.codec.decode(&tokens).map_err(|e| {
                    ApiError::invalid_param(
                        "prompt",
                        format!("the prompt's tokens cannot be decoded: {e}"),
                    )
                })?
            } else {
                String::new()
            };
            (text, tokens)
        }
    };
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
    let logprobs = decoding.logprobs.is_some();
    let request = Request {
        prompt,
        mode,
        k,
        max_new_tokens: max_tokens,
        eos,
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
        logprobs,
        echo: extras.echo.then_some(echo),
    })
}

/// A 404 when a request names a model other than the served one.
pub fn check_model(config: &ServerConfig, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(model) if model != config.model_name => {
            Err(ApiError::unknown_model(model, &config.model_name))
        }
        _ => Ok(()),
    }
}

/// A 400 naming `param` when a token id lies outside the model's
/// vocabulary (unchecked when the server does not know it).
pub fn check_token_ids(
    config: &ServerConfig,
    tokens: &[TokenId],
    param: &'static str,
) -> Result<(), ApiError> {
    let Some(vocab) = config.vocab else {
        return Ok(());
    };
    match tokens.iter().find(|&&t| t as usize >= vocab) {
        Some(bad) => Err(ApiError::invalid_param(
            param,
            format!(
                "token id {bad} is not in the vocabulary of {vocab} tokens: send ids 0 to {}",
                vocab - 1
            ),
        )),
        None => Ok(()),
    }
}

/// The logits processors `fields` ask for.
fn processors(fields: &CommonFields, config: &ServerConfig) -> Result<LogitsProcessors, ApiError> {
    let logit_bias = fields
        .logit_bias
        .iter()
        .flatten()
        .map(|(token, &bias)| match token.parse::<TokenId>() {
            Ok(id) => Ok((id, bias)),
            Err(_) => Err(ApiError::invalid_param(
                "logit_bias",
                format!("logit_bias key {token:?} is not a token id: use token ids as keys, e.g. {{\"50256\": -100}}"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LogitsProcessors {
        presence_penalty: fields.presence_penalty.unwrap_or(0.0),
        frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
        repetition_penalty: fields.repetition_penalty.unwrap_or(1.0),
        logit_bias,
        min_tokens: fields.min_tokens.unwrap_or(0) as usize,
        eos: config.eos.clone(),
        // The driver sets it from the prompt.
        prompt_len: 0,
    })
}

/// A processor setting out of range, as a 400 naming its field.
fn processor_error(error: &dsi_core::Error) -> ApiError {
    match error {
        dsi_core::Error::InvalidParameter {
            name,
            value,
            expected,
        } => ApiError::invalid_param(
            name,
            format!("{name} = {value} is out of range: use {expected}"),
        ),
        dsi_core::Error::TokenOutOfVocabulary { token, vocab } => ApiError::invalid_param(
            "logit_bias",
            format!("logit_bias names token {token}, outside the vocabulary of {vocab} tokens"),
        ),
        other => ApiError::invalid(other.to_string()),
    }
}

/// The body of a request to `endpoint` as `T`, after [`fields::check`]
/// found every field served.
pub fn parse_request<T: DeserializeOwned>(
    state: &State,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<T, ApiError> {
    let value: serde_json::Value = parse(state, body)?;
    fields::check(&value, endpoint)?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(format!("the request does not match the schema: {e}")))
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
