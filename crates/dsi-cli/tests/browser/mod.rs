//! Headless Chromium over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs), driven with plain HTTP
//! calls: the W3C protocol needs nothing more.
//!
//! Shared by the browser tests, each of which uses a part.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; chromedriver (and its browser) is stopped and the
/// profile removed when dropped.
pub(crate) struct Browser {
    driver: Child,
    client: reqwest::Client,
    session: String,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with the flags this
    /// machine needs (no network beyond loopback) plus `extra`.
    pub(crate) async fn start(extra: &[&str]) -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "headless Chromium is needed: apt-get install chromium chromium-driver (.ci/run does)"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let profile =
            std::env::temp_dir().join(format!("dsi-chromium-{}-{port}", std::process::id()));
        let client = reqwest::Client::new();
        let mut browser = Browser {
            driver,
            client,
            session: String::new(),
            profile,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while browser
            .client
            .get(format!("{base}/status"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < until, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile_arg = format!("--user-data-dir={}", browser.profile.display());
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-dev-shm-usage",
            &profile_arg,
        ];
        args.extend_from_slice(extra);
        let created: Value = browser
            .client
            .post(format!("{base}/session"))
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
            .unwrap_or_else(|| panic!("no session: {created}"));
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// One WebDriver command of this session.
    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert!(status.is_success(), "webdriver {path}: {value}");
        value["value"].clone()
    }

    /// Opens `url`.
    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` in the page and returns what it returns.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Clicks the element `css` selects.
    pub(crate) async fn click(&self, css: &str) {
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
    pub(crate) async fn wait_for(&self, expression: &str, within: Duration) -> Value {
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

    /// Ends the session (the browser closes).
    pub(crate) async fn close(self) {
        self.call(reqwest::Method::DELETE, "", json!({})).await;
    }
}
