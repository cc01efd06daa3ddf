//! `/play`: the browser engine's page (DSI computed on the visitor's
//! WebGPU, `web/play/`), its wasm build and the bundled pair's files it
//! loads. The page and its scripts are embedded; the wasm build and the
//! weights are read from disk (`ServerConfig::play`), so a server without
//! the build still serves the page, which says how to build it.

use crate::state::State;
use axum::extract::{Path, State as Shared};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::path::PathBuf;
use std::sync::Arc;

/// Where `/play` finds what is not embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayFiles {
    /// The wasm-bindgen output: `dsi_web.js` and `dsi_web_bg.wasm`
    /// (`bash scripts/build-web.sh` writes them to `target/web/play/pkg`).
    pub engine: PathBuf,
    /// The pair the page loads: `target/` and `drafter/` checkpoint
    /// folders (the bundled pair; the page never gets the served model's
    /// weights).
    pub models: PathBuf,
}

/// The engine's files by name, with their types.
const ENGINE_FILES: &[(&str, &str)] = &[
    ("dsi_web.js", "text/javascript; charset=utf-8"),
    ("dsi_web_bg.wasm", "application/wasm"),
];

/// The checkpoint files the page may fetch.
const MODEL_FILES: &[(&str, &str)] = &[
    ("config.json", "application/json"),
    ("generation_config.json", "application/json"),
    ("tokenizer.json", "application/json"),
    ("model.safetensors", "application/octet-stream"),
];

embedded!(index, "play/index.html", "text/html; charset=utf-8");
embedded!(play_js, "play/play.js", "text/javascript; charset=utf-8");
embedded!(play_css, "play/play.css", "text/css; charset=utf-8");

/// `/play` to `/play/`, so the page's relative paths (the same as on any
/// static host) resolve under it; the query (`?autorun=1`) is kept.
pub async fn redirect(uri: Uri) -> Redirect {
    match uri.query() {
        Some(query) => Redirect::permanent(&format!("/play/?{query}")),
        None => Redirect::permanent("/play/"),
    }
}

/// `/play/pkg/{file}`: the wasm build.
pub async fn engine(Shared(state): Shared<Arc<State>>, Path(file): Path<String>) -> Response {
    let Some(&(name, mime)) = ENGINE_FILES.iter().find(|(name, _)| *name == file) else {
        return missing(format!("no engine file {file}"));
    };
    let Some(play) = &state.config.play else {
        return missing("this server does not serve the browser engine".into());
    };
    match tokio::fs::read(play.engine.join(name)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        Err(_) => missing(format!(
            "the browser engine is not built ({} has no {name}): run `bash scripts/build-web.sh`, or start dsi serve with --play-engine DIR",
            play.engine.display()
        )),
    }
}

/// `/play/models/{role}/{file}`: the bundled pair's checkpoint files.
pub async fn model_file(
    Shared(state): Shared<Arc<State>>,
    Path((role, file)): Path<(String, String)>,
) -> Response {
    let known = MODEL_FILES.iter().find(|(name, _)| *name == file);
    let (Some(&(name, mime)), true) = (known, role == "target" || role == "drafter") else {
        return missing(format!(
            "no model file {role}/{file}: the page loads target/ and drafter/ config.json, generation_config.json, tokenizer.json and model.safetensors"
        ));
    };
    let Some(play) = &state.config.play else {
        return missing("this server does not serve the browser engine's models".into());
    };
    let path = play.models.join(&role).join(name);
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => missing(format!("{} is not there", path.display())),
    }
}

fn missing(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
