//! `POST /tokenize` and `POST /detokenize`, in vLLM's shapes: the served
//! tokenizer (and chat template) without a generation.

use crate::error::ApiError;
use crate::openai::ChatMessage;
use crate::prepare::parse;
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

fn check_model(state: &State, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(model) if model != state.config.model_name => {
            Err(ApiError::unknown_model(model, &state.config.model_name))
        }
        _ => Ok(()),
    }
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
    check_model(&state, model.as_deref())?;
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
    check_model(&state, request.model.as_deref())?;
    if let Some(vocab) = state.config.vocab
        && let Some(bad) = request.tokens.iter().find(|&&t| t as usize >= vocab)
    {
        return Err(ApiError::invalid_param(
            "tokens",
            format!("token id {bad} is not in the vocabulary of {vocab} tokens"),
        ));
    }
    let text = state.codec.decode(&request.tokens).map_err(|e| {
        ApiError::invalid_param("tokens", format!("the tokens cannot be decoded: {e}"))
    })?;
    Ok(Json(serde_json::json!({ "prompt": text })))
}
