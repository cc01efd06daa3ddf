//! `POST /v1/completions` and `POST /v1/chat/completions`.

use crate::error::ApiError;
use crate::generation::{self, Piece};
use crate::openai::{
    ChatRequest, CompletionRequest, Endpoint, FinishReason, LogprobEntry, PromptField,
    ResponseHead, Usage,
};
use crate::prepare::{Extras, Prepared, Prompt, parse_request, prepare};
use crate::state::State;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// `POST /v1/completions`.
pub async fn completions(
    Shared(state): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let prepared = prepare_completion(&state, body);
    respond(state, Endpoint::Completions, prepared, arrived).await
}

/// What a request body to `endpoint` becomes: checked and ready to run, or
/// the error its client gets (what the request fuzz target drives).
pub fn check_body(state: &State, endpoint: Endpoint, body: &[u8]) -> Result<Prepared, ApiError> {
    let body = Ok(Bytes::copy_from_slice(body));
    match endpoint {
        Endpoint::Completions => prepare_completion(state, body),
        Endpoint::Chat => prepare_chat(state, body),
    }
}

/// A completion request's body, checked and ready to run.
fn prepare_completion(
    state: &State,
    body: Result<Bytes, BytesRejection>,
) -> Result<Prepared, ApiError> {
    let request = parse_request::<CompletionRequest>(state, body, Endpoint::Completions)?;
    if request.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid_param(
            "best_of",
            "best_of > 1 is not supported: this server generates one candidate per request",
        ));
    }
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param(
            "suffix",
            "suffix (insertion) is not supported: send the text before the gap as the prompt",
        ));
    }
    if request.echo && request.logprobs.is_some() {
        return Err(ApiError::invalid_param(
            "echo",
            "echo with logprobs would need the prompt's log probabilities, which this server does not compute: drop one of them",
        ));
    }
    let prompt = single_prompt(request.prompt)?;
    let extras = Extras {
        logprobs: request.logprobs,
        echo: request.echo,
    };
    prepare(state, request.common, prompt, extras)
}

/// The one prompt of a completion request.
fn single_prompt(prompt: PromptField) -> Result<Prompt, ApiError> {
    let several = |n: usize| {
        ApiError::invalid_param(
            "prompt",
            format!(
                "prompt holds {n} prompts; this server takes one per request: send several requests"
            ),
        )
    };
    match prompt {
        PromptField::Text(text) => Ok(Prompt::Text(text)),
        PromptField::Tokens(tokens) => Ok(Prompt::Tokens(tokens)),
        PromptField::Batch(mut batch) if batch.len() == 1 => Ok(Prompt::Text(batch.remove(0))),
        PromptField::TokenBatch(mut batch) if batch.len() == 1 => {
            Ok(Prompt::Tokens(batch.remove(0)))
        }
        PromptField::Batch(batch) => Err(several(batch.len())),
        PromptField::TokenBatch(batch) => Err(several(batch.len())),
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    Shared(state): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let prepared = prepare_chat(&state, body);
    respond(state, Endpoint::Chat, prepared, arrived).await
}

/// A chat request's body, checked, rendered and ready to run.
fn prepare_chat(state: &State, body: Result<Bytes, BytesRejection>) -> Result<Prepared, ApiError> {
    let request = parse_request::<ChatRequest>(state, body, Endpoint::Chat)?;
    check_chat_only(&request)?;
    let prompt = state.config.chat.render(&request.messages)?;
    let extras = Extras {
        logprobs: request.logprobs.then(|| request.top_logprobs.unwrap_or(0)),
        echo: false,
    };
    prepare(state, request.common, Prompt::Text(prompt), extras)
}

/// Refuses chat settings this server cannot honour.
fn check_chat_only(request: &ChatRequest) -> Result<(), ApiError> {
    if request.top_logprobs.is_some() && !request.logprobs {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    if let Some(format) = &request.response_format
        && format.get("type").and_then(|t| t.as_str()) != Some("text")
    {
        return Err(ApiError::invalid_param(
            "response_format",
            "only response_format {\"type\": \"text\"} is supported: constrained JSON output is not implemented; describe the format in a message",
        ));
    }
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::invalid_param(
            "tools",
            "tool calling is not supported: describe the tools in a message",
        ));
    }
    if let Some(choice) = &request.tool_choice
        && choice.as_str() != Some("none")
    {
        return Err(ApiError::invalid_param(
            "tool_choice",
            "tool calling is not supported: only tool_choice \"none\" is served",
        ));
    }
    Ok(())
}

async fn respond(
    state: Arc<State>,
    endpoint: Endpoint,
    prepared: Result<Prepared, ApiError>,
    arrived: Instant,
) -> Response {
    let prepared = match prepared.and_then(|p| match state.admission.enter() {
        Some(ticket) => Ok((p, ticket)),
        None => Err(ApiError::busy(state.config.retry_after_s)),
    }) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.request(endpoint, e.status.as_u16());
            tracing::info!(
                target: "dsi::request",
                endpoint = endpoint.label(),
                status = e.status.as_u16(),
                param = e.param_name(),
                error = %e.message,
                "request refused"
            );
            return e.into_response();
        }
    };
    let (prepared, ticket) = prepared;
    let head = ResponseHead::new(endpoint, state.next_serial(), &state.config.model_name);
    let (stream, include_usage, logprobs) =
        (prepared.stream, prepared.include_usage, prepared.logprobs);
    let (tx, rx) = unbounded_channel();
    tokio::spawn(generation::run(
        Arc::clone(&state),
        endpoint,
        head.id.clone(),
        prepared,
        ticket,
        arrived,
        tx,
    ));
    if stream {
        sse(state, head, include_usage, rx).into_response()
    } else {
        whole(state, head, logprobs, rx).await
    }
}

/// Server-sent events in OpenAI's chunk format, ending with `[DONE]`. A
/// generation that ends without saying how (its task panicked) ends the
/// stream with an error event, then `[DONE]`, and counts as a 500.
fn sse(
    state: Arc<State>,
    head: ResponseHead,
    include_usage: bool,
    rx: UnboundedReceiver<Piece>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let mut first = true;
    let (endpoint, id) = (head.endpoint, head.id.clone());
    let done = Arc::new(AtomicBool::new(false));
    let saw_done = Arc::clone(&done);
    let events = UnboundedReceiverStream::new(rx).filter_map(move |piece| {
        let data = match piece {
            Piece::Text(text, logprobs) => {
                let chunk = head.delta(&text, logprobs.as_deref(), first);
                first = false;
                chunk.to_string()
            }
            Piece::Finish(finish) => head.finish(finish).to_string(),
            Piece::Usage(usage) if include_usage => head.usage_chunk(&usage).to_string(),
            Piece::Usage(_) => return None,
            Piece::Error(error) => error.body().to_string(),
            Piece::Done => {
                saw_done.store(true, Ordering::Relaxed);
                "[DONE]".to_string()
            }
        };
        Some(Ok(Event::default().data(data)))
    });
    let tail = futures_util::StreamExt::flat_map(
        futures_util::stream::once(async move {
            if done.load(Ordering::Relaxed) {
                return Vec::new();
            }
            let error = vanished(&state, endpoint, &id);
            vec![error.body().to_string(), "[DONE]".to_string()]
        }),
        |events| {
            futures_util::stream::iter(
                events
                    .into_iter()
                    .map(|data| Ok(Event::default().data(data))),
            )
        },
    );
    Sse::new(events.chain(tail)).keep_alive(KeepAlive::default())
}

/// Waits for the whole generation and answers one JSON object (a 500 if
/// the generation ends without saying how).
async fn whole(
    state: Arc<State>,
    head: ResponseHead,
    wants_logprobs: bool,
    mut rx: UnboundedReceiver<Piece>,
) -> Response {
    let mut text = String::new();
    let mut logprobs: Option<Vec<LogprobEntry>> = None;
    let mut finish = FinishReason::Stop;
    let mut usage = Usage::default();
    loop {
        match rx.recv().await {
            Some(Piece::Text(t, entries)) => {
                text.push_str(&t);
                if let Some(entries) = entries {
                    logprobs.get_or_insert_with(Vec::new).extend(entries);
                }
            }
            Some(Piece::Finish(f)) => finish = f,
            Some(Piece::Usage(u)) => usage = u,
            Some(Piece::Error(error)) => return error.into_response(),
            Some(Piece::Done) => break,
            None => return vanished(&state, head.endpoint, &head.id).into_response(),
        }
    }
    if logprobs.is_none() && wants_logprobs {
        logprobs = Some(Vec::new());
    }
    axum::Json(head.full(&text, logprobs.as_deref(), finish, &usage)).into_response()
}

/// The error of a generation whose task ended without finishing, counted.
fn vanished(state: &State, endpoint: Endpoint, id: &str) -> ApiError {
    state.metrics.request(endpoint, 500);
    state.metrics.vanished();
    tracing::error!(
        target: "dsi::request",
        id,
        endpoint = endpoint.label(),
        status = 500,
        "a generation ended without finishing (its task panicked)"
    );
    ApiError::engine(
        "the generation ended without finishing (an internal error); the server is still serving: retry the request",
    )
}
