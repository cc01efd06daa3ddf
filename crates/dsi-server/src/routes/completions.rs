//! `POST /v1/completions` and `POST /v1/chat/completions`.

use crate::error::ApiError;
use crate::generation::{self, Piece};
use crate::openai::{
    ChatRequest, CompletionRequest, Endpoint, FinishReason, PromptField, ResponseHead, Usage,
};
use crate::prepare::{Prepared, parse, prepare};
use crate::state::State;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
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
    let endpoint = Endpoint::Completions;
    let prepared = parse::<CompletionRequest>(&state, body).and_then(|request| {
        let prompt = match request.prompt {
            PromptField::Text(text) => text,
            PromptField::Batch(mut batch) if batch.len() == 1 => batch.remove(0),
            PromptField::Batch(batch) => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    format!(
                        "prompt holds {} prompts; this server takes one per request",
                        batch.len()
                    ),
                ));
            }
        };
        prepare(&state, request.common, &prompt)
    });
    respond(state, endpoint, prepared, arrived).await
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    Shared(state): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let endpoint = Endpoint::Chat;
    let prepared = parse::<ChatRequest>(&state, body).and_then(|request| {
        let prompt = state.config.chat.render(&request.messages)?;
        prepare(&state, request.common, &prompt)
    });
    respond(state, endpoint, prepared, arrived).await
}

async fn respond(
    state: Arc<State>,
    endpoint: Endpoint,
    prepared: Result<Prepared, ApiError>,
    arrived: Instant,
) -> Response {
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            state.metrics.request(endpoint, e.status.as_u16());
            return e.into_response();
        }
    };
    let Some(ticket) = state.admission.enter() else {
        let e = ApiError::busy(state.config.retry_after_s);
        state.metrics.request(endpoint, e.status.as_u16());
        return e.into_response();
    };
    let head = ResponseHead::new(endpoint, state.next_serial(), &state.config.model_name);
    let (stream, include_usage) = (prepared.stream, prepared.include_usage);
    let (tx, rx) = unbounded_channel();
    tokio::spawn(generation::run(
        Arc::clone(&state),
        endpoint,
        prepared,
        ticket,
        arrived,
        tx,
    ));
    if stream {
        sse(head, include_usage, rx).into_response()
    } else {
        whole(head, rx).await
    }
}

/// Server-sent events in OpenAI's chunk format, ending with `[DONE]`.
fn sse(
    head: ResponseHead,
    include_usage: bool,
    rx: UnboundedReceiver<Piece>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let mut first = true;
    let events = UnboundedReceiverStream::new(rx).filter_map(move |piece| {
        let data = match piece {
            Piece::Text(text) => {
                let chunk = head.delta(&text, first);
                first = false;
                chunk.to_string()
            }
            Piece::Finish(finish) => head.finish(finish).to_string(),
            Piece::Usage(usage) if include_usage => head.usage_chunk(&usage).to_string(),
            Piece::Usage(_) => return None,
            Piece::Error(error) => error.body().to_string(),
            Piece::Done => "[DONE]".to_string(),
        };
        Some(Ok(Event::default().data(data)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Waits for the whole generation and answers one JSON object.
async fn whole(head: ResponseHead, mut rx: UnboundedReceiver<Piece>) -> Response {
    let mut text = String::new();
    let mut finish = FinishReason::Stop;
    let mut usage = Usage::default();
    while let Some(piece) = rx.recv().await {
        match piece {
            Piece::Text(t) => text.push_str(&t),
            Piece::Finish(f) => finish = f,
            Piece::Usage(u) => usage = u,
            Piece::Error(error) => return error.into_response(),
            Piece::Done => break,
        }
    }
    axum::Json(head.full(&text, finish, &usage)).into_response()
}
