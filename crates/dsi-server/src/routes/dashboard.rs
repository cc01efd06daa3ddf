//! The dashboard: its embedded assets, the live timeline (SSE), the
//! server's description and operating point, the simulator's heatmap and
//! the non-SI / SI / DSI race.

use crate::error::ApiError;
use crate::openai::CommonFields;
use crate::prepare::{Extras, Prompt, parse, prepare};
use crate::state::State;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dsi_core::TokenId;
use dsi_core::schedule::{Mode, ModeSetting};
use dsi_core::sim::heatmap::HeatmapSpec;
use dsi_sched::{Request, Update};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// Longest race, in tokens per mode.
const RACE_MAX_TOKENS: usize = 96;

embedded!(index, "index.html", "text/html; charset=utf-8");
embedded!(app_js, "app.js", "text/javascript; charset=utf-8");
embedded!(timeline_js, "timeline.js", "text/javascript; charset=utf-8");
embedded!(heatmap_js, "heatmap.js", "text/javascript; charset=utf-8");
embedded!(race_js, "race.js", "text/javascript; charset=utf-8");
embedded!(auth_js, "auth.js", "text/javascript; charset=utf-8");
embedded!(style_css, "style.css", "text/css; charset=utf-8");

/// Every job event of every request, as SSE, until the server shuts down.
pub async fn timeline(
    Shared(state): Shared<Arc<State>>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let stop = state.shutdown.cancelled();
    let events = BroadcastStream::new(state.pool.subscribe())
        // A slow page misses entries instead of slowing the scheduler.
        .filter_map(|record| record.ok())
        .map(|record| {
            Ok(Event::default()
                .event("job")
                .data(serde_json::to_string(&record).unwrap_or_default()))
        });
    let events = futures_util::StreamExt::take_until(events, stop);
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The pool, the defaults, the limits and the operating point `(a, c)`.
pub async fn info(Shared(state): Shared<Arc<State>>) -> impl IntoResponse {
    let (drafter, targets) = state.pool.workers();
    let config = &state.config;
    let emulated_c = config
        .emulated_drafter_ms
        .zip(config.emulated_target_ms)
        .filter(|(_, t)| t.1 > 0.0)
        .map(|(d, t)| d.1 / t.1);
    let (slots, queue) = state.admission.limits();
    Json(serde_json::json!({
        "model": config.model_name,
        "mode": config.mode.to_string(),
        "lookahead": config.lookahead,
        "drafter": drafter.map(|d| d.name()),
        "targets": targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "emulated_target_ms": config.emulated_target_ms,
        "emulated_drafter_ms": config.emulated_drafter_ms,
        "operating_point": {
            "a": state.metrics.acceptance(),
            "c": emulated_c.or_else(|| state.metrics.drafter_latency_ratio()),
        },
        "limits": {
            "slots": slots,
            "queue": queue,
            "max_tokens": config.max_tokens,
            "context": config.context,
        },
    }))
}

/// The simulator's speedup heatmaps (DSI over SI and over non-SI) on an
/// 11 x 11 grid with this pool's target count, computed once.
pub async fn heatmap(Shared(state): Shared<Arc<State>>) -> Response {
    let servers = state.pool.targets().max(1);
    let cells = state
        .heatmap
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || {
                let spec = HeatmapSpec {
                    ndim: 10,
                    servers,
                    tokens: 200,
                    repeats: 2,
                    seed: 42,
                };
                spec.run(|_, _| {}).map(|cells| {
                    cells
                        .iter()
                        .map(|cell| {
                            serde_json::json!({
                                "c": cell.c,
                                "a": cell.a,
                                "dsi_over_si": cell.speedup_dsi_over_si(),
                                "dsi_over_nonsi": cell.speedup_dsi_over_nonsi(),
                                "si_over_nonsi": cell.speedup_si_over_nonsi(),
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .await
            .map_err(|e| ApiError::engine(format!("the simulator stopped: {e}")))?
            .map_err(|e| ApiError::engine(format!("the simulator refused the grid: {e}")))
        })
        .await;
    match cells {
        Ok(cells) => {
            Json(serde_json::json!({ "servers": servers, "cells": cells })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/dashboard/race`.
#[derive(Debug, Deserialize)]
pub struct RaceRequest {
    prompt: String,
    #[serde(default = "race_default_tokens")]
    max_tokens: usize,
    lookahead: Option<u32>,
}

fn race_default_tokens() -> usize {
    32
}

/// Runs the prompt greedily in non-SI, SI, DSI and auto (when the server
/// has a profile), one after the other on the same workers, and returns
/// when each token arrived, so the page can replay them side by side on one
/// clock. Each run is its own request, so it starts from empty KV caches;
/// the order rotates from race to race, so no mode always runs first (on a
/// cold machine) or always after another warmed it.
pub async fn race(
    Shared(state): Shared<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The race holds a slot like any generation: it ends at the request
    // deadline, and a drain that runs out of grace cancels it (dropping it
    // cancels its jobs).
    let timeout = state.config.request_timeout;
    let result = tokio::select! {
        result = run_race(&state, body) => result,
        () = tokio::time::sleep(timeout) => Err(ApiError::deadline(timeout.as_secs_f64())),
        () = state.shutdown.cancelled() => Err(ApiError::draining()),
    };
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run_race(
    state: &State,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Value, ApiError> {
    let race: RaceRequest = parse(state, body)?;
    if race.max_tokens == 0 || race.max_tokens > RACE_MAX_TOKENS {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!("a race runs 1 to {RACE_MAX_TOKENS} tokens per mode"),
        ));
    }
    // The same checks as a completion's (lookahead, drafter, prompt length
    // and context), as a greedy DSI request; the race varies only the mode.
    let fields = CommonFields {
        max_tokens: Some(race.max_tokens as u32),
        lookahead: race.lookahead,
        mode: Some(Mode::Dsi.to_string()),
        ..CommonFields::default()
    };
    let request = prepare(state, fields, Prompt::Text(race.prompt), Extras::default())?.request;
    let mut ticket = state
        .admission
        .enter()
        .ok_or_else(|| ApiError::busy(state.config.retry_after_s))?;
    ticket.run().await;
    let mut modes = vec![
        ModeSetting::Fixed(Mode::NonSi),
        ModeSetting::Fixed(Mode::Si),
        ModeSetting::Fixed(Mode::Dsi),
    ];
    if state.pool.tuning().is_some() {
        modes.push(ModeSetting::Auto);
    }
    let turn = state.next_serial() as usize % modes.len();
    modes.rotate_left(turn);
    let order: Vec<String> = modes.iter().map(ToString::to_string).collect();
    let mut runs = Vec::new();
    let mut outputs: Vec<Vec<TokenId>> = Vec::new();
    for mode in modes {
        let request = Request {
            mode,
            ..request.clone()
        };
        let began = Instant::now();
        let mut times_ms = Vec::new();
        let generation = state
            .pool
            .generate(request, |update| {
                if let Update::Tokens(tokens) = update {
                    let t = began.elapsed().as_secs_f64() * 1e3;
                    times_ms.extend(std::iter::repeat_n(t, tokens.len()));
                }
            })
            .await?;
        let text = state.codec.decode(&generation.tokens).unwrap_or_default();
        let s = &generation.stats;
        let policy = s.policy();
        runs.push(serde_json::json!({
            "mode": mode.to_string(),
            "policy": policy.to_string(),
            "auto": s.auto,
            "times_ms": times_ms,
            "text": text,
            "total_ms": s.total_ms,
            "tokens_per_s": s.tokens_per_s,
            "draft_tokens": s.counters.draft_tokens,
            "accepted_tokens": s.counters.accepted_tokens,
            "preempted_jobs": s.counters.jobs_preempted,
        }));
        outputs.push(generation.tokens);
    }
    let identical = outputs.windows(2).all(|w| w[0] == w[1]);
    // The page shows the runs in a fixed order; `order` says how they ran.
    let rank = |mode: &str| {
        ["nonsi", "si", "dsi", "auto"]
            .iter()
            .position(|m| *m == mode)
    };
    runs.sort_by_key(|run| rank(run["mode"].as_str().unwrap_or_default()));
    Ok(serde_json::json!({
        "lookahead": request.k,
        "runs": runs,
        "identical": identical,
        "order": order,
        "fairness": "each run starts from empty KV caches; the order rotates from race to race",
    }))
}
