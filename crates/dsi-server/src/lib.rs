//! dsi's HTTP server: OpenAI-compatible completions and chat (whole or
//! streamed as server-sent events), Prometheus metrics, health, and the
//! live dashboard of `web/` with its assets embedded, and `/play`, the page
//! that runs DSI in the visitor's browser on WebGPU.
//!
//! The server sees the engine through two things only: a `dsi_sched::Pool`
//! (whose workers it shares among all requests) and a [`TextCodec`]. It
//! knows no model internals; the binary builds both.
//!
//! - [`prepare`] checks a request against the limits and builds the
//!   scheduler's request; [`error::ApiError`] is the one place where errors
//!   become statuses.
//! - [`admission`] bounds running and queued generations (429 past them).
//! - [`generation`] runs one request as a task that stops when its client
//!   goes away, at its deadline, or when a drain runs out of grace.
//! - [`metrics`] and [`shutdown`] serve `/metrics` and SIGTERM.

pub mod admission;
pub mod auth;
pub mod chat;
pub mod codec;
pub mod config;
pub mod error;
pub mod fields;
pub mod generation;
pub mod metrics;
pub mod openai;
pub mod output;
pub mod prepare;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod stop;

pub use chat::ChatTemplate;
pub use codec::TextCodec;
pub use config::ServerConfig;
pub use error::ApiError;
pub use state::State;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use routes::{completions, dashboard, ops, play, tokenize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Every route over `state`.
pub fn router(state: Arc<State>) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app_js))
        .route("/timeline.js", get(dashboard::timeline_js))
        .route("/heatmap.js", get(dashboard::heatmap_js))
        .route("/race.js", get(dashboard::race_js))
        .route("/auth.js", get(dashboard::auth_js))
        .route("/style.css", get(dashboard::style_css))
        .route("/play", get(play::redirect))
        .route("/play/", get(play::index))
        .route("/play/play.js", get(play::play_js))
        .route("/play/play.css", get(play::play_css))
        .route("/play/timeline.js", get(dashboard::timeline_js))
        .route("/play/style.css", get(dashboard::style_css))
        .route("/play/pkg/{file}", get(play::engine))
        .route("/play/models/{role}/{file}", get(play::model_file))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/models", get(ops::models))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(completions::chat))
        .route("/v1/dashboard/info", get(dashboard::info))
        .route("/v1/dashboard/timeline", get(dashboard::timeline))
        .route("/v1/dashboard/heatmap", get(dashboard::heatmap))
        .route("/v1/dashboard/race", post(dashboard::race))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        ..ApiError::invalid(format!(
            "no route {uri}: see /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /metrics, /healthz"
        ))
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::invalid(format!("{method} is not allowed on {uri}"))
    }
}

/// Serves on `listener` until `stop` resolves, then drains: new requests get
/// 503 while in-flight generations finish for up to the configured grace,
/// after which the rest are cancelled and the server returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    let drained = async move {
        stop.await;
        state.shutdown.drain();
        let grace = tokio::time::Instant::now() + state.config.drain_grace;
        while state.admission.running() + state.admission.queued() > 0
            && tokio::time::Instant::now() < grace
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        state.shutdown.cancel_all();
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(drained)
        .await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = async {
        // Without a handler there is nothing to wait for but SIGTERM.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                () = ctrl_c => {}
            },
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
