//! End to end in headless Chromium: the dashboard served by `dsi serve`
//! streams a generation and draws the scheduler's timeline (drafter and
//! target lanes, accepted and preempted jobs), and the race replays non-SI,
//! SI and DSI with identical outputs.
//!
//! Driven over WebDriver (Debian's `chromium` and `chromium-driver`, which
//! `.ci/run` installs) with plain HTTP calls: the W3C protocol needs nothing
//! more.

#![allow(clippy::unwrap_used)]

mod serving;

use serde_json::{Value, json};
use serving::{Server, runtime};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Session<'a> {
    client: &'a reqwest::Client,
    url: String,
}

impl Session<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert!(status.is_success(), "webdriver {path}: {value}");
        value["value"].clone()
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn click(&self, css: &str) {
        let element = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let id = element[ELEMENT].as_str().unwrap().to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Polls `expression` until it is neither null nor false.
    async fn wait_for(&self, expression: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let value = self.script(&format!("return {expression} ?? null;")).await;
            if !value.is_null() && value != json!(false) {
                return value;
            }
            if Instant::now() > until {
                let status = self
                    .script("return document.getElementById('status').textContent")
                    .await;
                panic!("{expression} not set within {within:?}; page status: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn the_dashboard_streams_tokens_and_draws_the_timeline() {
    assert!(
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
        "headless Chromium is needed: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let server = Server::start(&[
        "--emulate-target-ms",
        "30,12",
        "--emulate-drafter-ms",
        "3,2",
        "--k",
        "4",
    ]);
    let port = free_port();
    let driver = Driver {
        child: Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let profile = std::env::temp_dir().join(format!("dsi-chromium-{}", std::process::id()));
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{}/status", driver.base)).send().await.is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let created: Value = client
            .post(format!("{}/session", driver.base))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        let session = Session {
            client: &client,
            url: format!("{}/session/{id}", driver.base),
        };
        session.call(reqwest::Method::POST, "/url", json!({"url": server.url("/")})).await;
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

        session.call(reqwest::Method::DELETE, "", json!({})).await;
    });
    drop(driver);
    let _ = std::fs::remove_dir_all(profile);
}
