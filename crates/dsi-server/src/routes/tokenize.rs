//! `POST /tokenize` and `POST /detokenize`, in vLLM's shapes: the served
//! tokenizer (and chat template) without a generation.

use crate::error::ApiError;
use crate::openai::ChatMessage;
use crate::prepare::{check_model, check_token_ids, parse};
use crate::state::State;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::extract::rejection::BytesRejection;
use serde::Deserialize;
use std::sync::Arc;

/// A text prompt, or chat messages rendered by the chat template.
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum TokenizeRequest {
    /// `{"prompt": ...}`.
    Prompt {
        model: Option<String>,
        prompt: String,
    },
    /// `{"messages": [...]}`.
    Chat {
        model: Option<String>,
        messages: Vec<ChatMessage>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

/// `POST /tokenize`: `{"count", "max_model_len", "tokens"}`.
pub async fn tokenize(
    Shared(state): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: TokenizeRequest = parse(&state, body).map_err(|e| ApiError {
        message: format!(
            "{}; send {{\"prompt\": text}} or {{\"messages\": [...]}}",
            e.message
        ),
        ..e
    })?;
    let (model, text) = match request {
        TokenizeRequest::Prompt { model, prompt } => (model, prompt),
        TokenizeRequest::Chat { model, messages } => (model, state.config.chat.render(&messages)?),
    };
    check_model(&state.config, model.as_deref())?;
    let tokens = state.codec.encode(&text).map_err(|e| {
        ApiError::invalid_param("prompt", format!("the text cannot be tokenized: {e}"))
    })?;
    Ok(Json(serde_json::json!({
        "count": tokens.len(),
        "max_model_len": state.config.context,
        "tokens": tokens,
    })))
}

/// `POST /detokenize`: `{"prompt"}`.
pub async fn detokenize(
    Shared(state): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: DetokenizeRequest = parse(&state, body)?;
    check_model(&state.config, request.model.as_deref())?;
    check_token_ids(&state.config, &request.tokens, "tokens")?;
    let text = state.codec.decode(&request.tokens).map_err(|e| {
        ApiError::invalid_param("tokens", format!("the tokens cannot be decoded: {e}"))
    })?;
    Ok(Json(serde_json::json!({ "prompt": text })))
}
