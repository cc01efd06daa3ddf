//! A `dsi serve` process on a loopback port, for tests over real HTTP.
//!
//! Shared by several test binaries, each of which uses a part.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Server {
    /// Starts `dsi serve --addr 127.0.0.1:0 ARGS` and waits for its
    /// `listening on http://ADDR` line.
    pub(crate) fn start(args: &[&str]) -> Server {
        Self::start_with_stderr(args, Stdio::inherit())
    }

    /// [`Server::start`] with the server's stderr (its logs) sent to `stderr`.
    pub(crate) fn start_with_stderr(args: &[&str], stderr: Stdio) -> Server {
        Self::start_custom("127.0.0.1:0", args, stderr, &[])
    }

    /// `dsi serve --addr ADDR ARGS` with `env` set and stderr to `stderr`.
    pub(crate) fn start_custom(
        addr: &str,
        args: &[&str],
        stderr: Stdio,
        env: &[(&str, &str)],
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dsi"))
            .args(["serve", "--addr", addr])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("dsi serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("dsi serve prints its address");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, base }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resident memory of the server process, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tokio runtime for the HTTP client.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// What a streamed response carried.
#[derive(Debug, Default)]
pub(crate) struct Streamed {
    pub(crate) status: u16,
    pub(crate) text: String,
    pub(crate) chunks: Vec<serde_json::Value>,
    pub(crate) done: bool,
    pub(crate) error: Option<serde_json::Value>,
}

/// POSTs `body` to `url` and reads the SSE stream to its end.
pub(crate) async fn stream(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Streamed {
    let mut response = client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let mut out = Streamed {
        status: response.status().as_u16(),
        ..Streamed::default()
    };
    if out.status != 200 {
        out.error = response.json().await.ok();
        return out;
    }
    let mut buffer = String::new();
    while let Some(bytes) = response.chunk().await.expect("stream readable") {
        buffer.push_str(std::str::from_utf8(&bytes).expect("utf-8 chunk"));
        while let Some(cut) = buffer.find("\n\n") {
            let message: String = buffer.drain(..cut + 2).collect();
            for data in message.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if data == "[DONE]" {
                    out.done = true;
                    continue;
                }
                let chunk: serde_json::Value = serde_json::from_str(data).expect("JSON chunk");
                if chunk.get("error").is_some() {
                    out.error = Some(chunk);
                    continue;
                }
                for choice in chunk["choices"].as_array().expect("choices") {
                    let piece = choice["text"]
                        .as_str()
                        .or_else(|| choice["delta"]["content"].as_str())
                        .unwrap_or("");
                    out.text.push_str(piece);
                }
                out.chunks.push(chunk);
            }
        }
    }
    out
}

/// The server's `/metrics` text.
pub(crate) async fn scrape(client: &reqwest::Client, server: &Server) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics answered")
        .text()
        .await
        .expect("metrics text")
}

/// The value of an unlabelled or labelled sample in Prometheus text.
pub(crate) fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l[sample.len()..].trim().parse().ok())
}
