//! End to end in headless Chromium: the dashboard served by `dsi serve`
//! streams a generation and draws the scheduler's timeline (drafter and
//! target lanes, accepted and preempted jobs), and the race replays non-SI,
//! SI and DSI with identical outputs.
//!
//! Driven over WebDriver (`browser`).

#![allow(clippy::unwrap_used)]

mod browser;
mod serving;

use browser::Browser;
use serving::{Server, runtime};
use std::time::Duration;

#[test]
fn the_dashboard_streams_tokens_and_draws_the_timeline() {
    let server = Server::start(&[
        "--emulate-target-ms",
        "30,12",
        "--emulate-drafter-ms",
        "3,2",
        "--k",
        "4",
    ]);
    let rt = runtime();
    rt.block_on(async {
        let session = Browser::start(&[]).await;
        session.goto(&server.url("/")).await;
        session.wait_for("window.__ready", Duration::from_secs(20)).await;
        // The page starts on the server's mode (auto); DSI draws every kind
        // of job on the timeline.
        let mode = session.script("return document.getElementById('mode').value").await;
        assert_eq!(mode, "auto");
        session
            .script("document.getElementById('max-tokens').value = '48'; document.getElementById('mode').value = 'dsi'; return true;")
            .await;
        session.click("#run").await;
        let result = session.wait_for("window.__result", Duration::from_secs(90)).await;

        let tokens = result["tokens"].as_u64().unwrap();
        assert!(tokens >= 8, "tokens streamed in: {result}");
        assert!(result["chunks"].as_u64().unwrap() >= 3, "in several chunks: {result}");
        assert!(!result["text"].as_str().unwrap().is_empty());
        let shown = session.script("return document.getElementById('output').textContent").await;
        assert_eq!(shown, result["text"]);
        let lanes: Vec<&str> = result["lanes"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert_eq!(lanes.iter().filter(|&&l| l == "drafter").count(), 1, "{lanes:?}");
        assert_eq!(lanes.iter().filter(|&&l| l == "target").count(), 2, "{lanes:?}");
        let jobs = &result["jobs"];
        assert!(jobs["draft"].as_u64().unwrap() > 0, "drafter jobs drawn: {jobs}");
        assert!(jobs["accepted"].as_u64().unwrap() > 0, "accepted jobs drawn: {jobs}");
        assert!(jobs["preempted"].as_u64().unwrap() > 0, "preempted jobs drawn: {jobs}");
        // Drawn inside the right lanes.
        let in_target_lanes = session
            .script("return document.querySelectorAll('#timeline .lane[data-role=target] rect.job.accepted').length")
            .await;
        assert_eq!(in_target_lanes, jobs["accepted"]);

        session.click("#race").await;
        let race = session.wait_for("window.__race", Duration::from_secs(90)).await;
        assert_eq!(race["identical"], true, "{race}");
        let rows = session.script("return document.querySelectorAll('#race-rows .race-row').length").await;
        assert_eq!(rows, 4, "non-SI, SI, DSI and auto");
        let heatmap = session.script("return document.getElementById('heatmap-caption').textContent").await;
        assert!(heatmap.as_str().unwrap().contains("this server: a = "), "{heatmap}");

        session.close().await;
    });
}
