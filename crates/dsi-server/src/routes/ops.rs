//! `GET /healthz`, `GET /metrics`, `GET /v1/models`.

use crate::state::State;
use axum::extract::State as Shared;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::sync::Arc;

/// 200 while serving, 503 while draining.
pub async fn healthz(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    if state.shutdown.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// The OpenMetrics text format (which Prometheus scrapes), as
/// `prometheus-client` encodes it.
pub async fn metrics(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(state.gauges()),
    )
}

/// The one served model, in OpenAI's list format.
pub async fn models(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": state.config.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "dsi",
        }],
    }))
}
