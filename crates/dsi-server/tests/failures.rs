//! Failures are failures: a generation task that dies (here its codec
//! panics while decoding, the test's fault hook) answers 500 to a whole
//! request and an error event then `[DONE]` to a stream, is counted in
//! `/metrics`, and the server keeps serving.

#![allow(clippy::unwrap_used)]

use dsi_core::TokenId;
use dsi_sched::synthetic::{SyntheticDrafter, SyntheticTarget, SyntheticWorld};
use dsi_sched::{Pool, Role, WorkerHandle};
use dsi_server::{ServerConfig, State, TextCodec};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Token `t` is the letter `a + t`; decoding panics while `panic` is set.
struct Letters {
    panic: AtomicBool,
}

impl TextCodec for Letters {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>, String> {
        Ok(text.bytes().map(|b| TokenId::from(b % 2)).collect())
    }

    fn decode(&self, tokens: &[TokenId]) -> Result<String, String> {
        assert!(
            !self.panic.load(Ordering::Relaxed),
            "the test's decode fault"
        );
        Ok(tokens.iter().map(|&t| char::from(b'a' + t as u8)).collect())
    }
}

fn pool() -> Pool {
    let world = SyntheticWorld { a: 0.7, seed: 3 };
    let drafter = SyntheticDrafter {
        step: Duration::from_millis(1),
    };
    let target = SyntheticTarget {
        world,
        forward: Duration::from_millis(2),
    };
    let drafter = WorkerHandle::spawn("drafter", Role::Drafter(Box::new(drafter))).unwrap();
    let targets = (0..2)
        .map(|i| {
            WorkerHandle::spawn(format!("target {i}"), Role::Target(Box::new(target))).unwrap()
        })
        .collect();
    Pool::new(Some(drafter), targets).unwrap()
}

#[test]
fn a_generation_that_panics_is_a_500_or_an_error_event_and_the_server_serves_on() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let codec = Arc::new(Letters {
            panic: AtomicBool::new(true),
        });
        let state = Arc::new(State::new(
            Arc::new(pool()),
            Arc::clone(&codec) as Arc<dyn TextCodec>,
            ServerConfig::new("synthetic", 256),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(dsi_server::serve(listener, state, std::future::pending()));
        let client = reqwest::Client::new();
        let request = json!({"prompt": "hello", "max_tokens": 8, "mode": "dsi"});
        let url = format!("{base}/v1/completions");

        let whole = client.post(&url).json(&request).send().await.unwrap();
        assert_eq!(whole.status(), 500);
        let body: Value = whole.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("without finishing")
        );

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        let stream = client.post(&url).json(&streamed).send().await.unwrap();
        assert_eq!(stream.status(), 200, "the stream had begun");
        let text = stream.text().await.unwrap();
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        let error: Value = serde_json::from_str(events[0]).unwrap();
        assert_eq!(error["error"]["type"], "server_error");
        assert_eq!(events[1], "[DONE]");

        codec.panic.store(false, Ordering::Relaxed);
        let ok = client.post(&url).json(&request).send().await.unwrap();
        assert_eq!(ok.status(), 200, "the server serves on");
        let ok: Value = ok.json().await.unwrap();
        assert_eq!(ok["usage"]["completion_tokens"], 8);

        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("dsi_generation_panics_total 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("dsi_requests_total{endpoint=\"completions\",status=\"500\"} 2"),
            "{metrics}"
        );
    });
}
