//! API keys: with keys configured, every model route (`/v1/*`, `/tokenize`,
//! `/detokenize`) needs `Authorization: Bearer <key>`; `/healthz` and
//! `/metrics` too when the operator protects them. The dashboard's page
//! and assets stay open; its API routes are under `/v1` and need the key,
//! which the page sends as a header, and, for its one `EventSource` (which
//! cannot send headers), as the `api_key` query parameter of
//! `/v1/dashboard/timeline` only.

use crate::error::ApiError;
use crate::state::State;
use axum::extract::{Request, State as Shared};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The path whose key may come as a query parameter.
const QUERY_KEY_PATH: &str = "/v1/dashboard/timeline";

/// True when `path` needs a key under these settings.
fn protected(path: &str, protect_metrics: bool) -> bool {
    path.starts_with("/v1/")
        || path == "/tokenize"
        || path == "/detokenize"
        || (protect_metrics && (path == "/metrics" || path == "/healthz"))
}

/// The keys a server accepts; `Debug` shows how many, never the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(Vec<String>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// These keys (empty ones dropped).
    pub fn new(keys: impl IntoIterator<Item = String>) -> Self {
        Self(keys.into_iter().filter(|k| !k.is_empty()).collect())
    }

    /// True when no key is needed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `offered` equals one of the keys. Every key is compared,
    /// each in time that depends on the lengths only, so the time taken
    /// says nothing about how much of a key was right.
    pub fn accepts(&self, offered: &str) -> bool {
        self.0.iter().fold(false, |found, key| {
            found | bool::from(key.as_bytes().ct_eq(offered.as_bytes()))
        })
    }
}

/// The middleware: a 401 in OpenAI's error shape without a valid key.
pub async fn require_key(
    Shared(state): Shared<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    let config = &state.config;
    if config.api_keys.is_empty() || !protected(request.uri().path(), config.protect_metrics) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = (request.uri().path() == QUERY_KEY_PATH)
        .then(|| request.uri().query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("api_key=")));
    match bearer.or(query) {
        Some(key) if config.api_keys.accepts(key) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_routes() {
        let keys = ApiKeys::new(["sk-one".to_string(), "sk-two".to_string(), String::new()]);
        assert!(keys.accepts("sk-two"));
        assert!(!keys.accepts("sk-tw"));
        assert!(!keys.accepts(""), "an empty key is never one");
        assert!(!ApiKeys::default().accepts("sk-one"));
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
        assert!(protected("/v1/completions", false));
        assert!(protected("/tokenize", false));
        assert!(!protected("/metrics", false) && protected("/metrics", true));
        assert!(!protected("/", true) && !protected("/app.js", true));
    }
}
