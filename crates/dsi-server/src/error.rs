//! The one place that maps what went wrong to an HTTP status and an
//! OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong and what to do.
    pub message: String,
    /// OpenAI's error type, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code, e.g. `model_not_found`.
    pub code: Option<&'static str>,
    /// Seconds to wait before retrying (429 and 503).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after_s: None,
        }
    }

    /// 400: the request is malformed or asks for something invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 about one field.
    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        Self::invalid_field(param, message)
    }

    /// 400 about a field named by the request itself.
    pub fn invalid_field(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::invalid(message)
        }
    }

    /// 401: no valid API key. OpenAI's shape and wording of the fix.
    pub fn unauthorized() -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "no valid API key: send `Authorization: Bearer <key>` with a key the server was started with (--api-key, --api-key-file or DSI_API_KEY)",
            )
        }
    }

    /// The field at fault, if one is.
    pub fn param_name(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// 404: no such model.
    pub fn unknown_model(asked: &str, served: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model {asked:?} does not exist here; this server serves {served:?}"),
            )
        }
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than {limit} bytes: send a shorter prompt"),
        )
    }

    /// 429: every generation slot and queue place is taken.
    pub fn busy(retry_after_s: u64) -> Self {
        Self {
            code: Some("queue_full"),
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "the server is at its limit of queued generations: retry in {retry_after_s} s"
                ),
            )
        }
    }

    /// 503: the server is shutting down.
    pub fn draining() -> Self {
        Self {
            code: Some("shutting_down"),
            retry_after_s: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the server is shutting down and takes no new requests: use another replica or retry later",
            )
        }
    }

    /// 504: the generation ran past the per-request deadline.
    pub fn deadline(limit_s: f64) -> Self {
        Self {
            code: Some("timeout"),
            ..Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                format!(
                    "the generation did not finish within the server's {limit_s} s deadline: ask for fewer max_tokens"
                ),
            )
        }
    }

    /// 500: the engine failed.
    pub fn engine(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": ErrorBody {
            message: &self.message,
            kind: self.kind,
            param: self.param.as_deref(),
            code: self.code,
        }})
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<dsi_sched::SchedError> for ApiError {
    fn from(error: dsi_sched::SchedError) -> Self {
        match error {
            dsi_sched::SchedError::Unfit(message) => Self::invalid(message),
            dsi_sched::SchedError::Invalid(error) => Self::invalid(error.to_string()),
            other => Self::engine(other.to_string()),
        }
    }
}
