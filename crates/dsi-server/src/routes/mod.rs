//! The HTTP routes.

/// A handler serving one embedded file of `web/`.
macro_rules! embedded {
    ($name:ident, $file:literal, $mime:literal) => {
        /// An embedded file of `web/`.
        pub async fn $name() -> impl axum::response::IntoResponse {
            (
                [
                    (axum::http::header::CONTENT_TYPE, $mime),
                    (axum::http::header::CACHE_CONTROL, "no-cache"),
                ],
                include_str!(concat!("../../../../web/", $file)),
            )
        }
    };
}

pub mod completions;
pub mod dashboard;
pub mod ops;
pub mod play;
pub mod tokenize;
