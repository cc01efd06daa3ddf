//! `dsi serve` over real HTTP on a loopback port, with the bundled pair:
//! every endpoint, the OpenAI formats, every error path, a client that
//! disconnects mid-stream, and SIGTERM draining.

#![allow(clippy::unwrap_used)]

mod serving;

use serde_json::{Value, json};
use serving::{Server, metric, runtime, scrape, stream};
use std::time::{Duration, Instant};

#[test]
fn endpoints_answer_in_openai_formats() {
    let server = Server::start(&["--k", "4"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let health = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let models: Value = client.get(server.url("/v1/models")).send().await.unwrap().json().await.unwrap();
        assert_eq!(models["object"], "list");
        assert_eq!(models["data"][0]["id"], "pystd");

        // Whole and streamed completions of one greedy request agree.
        let request = json!({"model": "pystd", "prompt": "def add(a, b):", "max_tokens": 24, "mode": "dsi"});
        let whole = client.post(server.url("/v1/completions")).json(&request).send().await.unwrap();
        assert_eq!(whole.status(), 200);
        let whole: Value = whole.json().await.unwrap();
        assert_eq!(whole["object"], "text_completion");
        assert!(whole["id"].as_str().unwrap().starts_with("cmpl-"));
        let choice = &whole["choices"][0];
        assert_eq!(choice["index"], 0);
        assert!(["length", "stop"].contains(&choice["finish_reason"].as_str().unwrap()));
        let usage = &whole["usage"];
        assert_eq!(usage["mode"], "dsi");
        assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
        assert!(usage["draft_tokens"].as_u64().unwrap() > 0, "DSI drafted: {usage}");
        assert!(usage["accepted_tokens"].as_u64().unwrap() <= usage["draft_tokens"].as_u64().unwrap());

        let mut streamed_request = request.clone();
        streamed_request["stream"] = json!(true);
        streamed_request["stream_options"] = json!({"include_usage": true});
        let streamed = stream(&client, &server.url("/v1/completions"), &streamed_request).await;
        assert_eq!(streamed.status, 200);
        assert!(streamed.done, "the stream ends with [DONE]");
        assert_eq!(streamed.text, choice["text"].as_str().unwrap(), "streamed text equals the whole response");
        assert!(streamed.chunks.len() >= 3, "text came in several chunks");
        let last = streamed.chunks.last().unwrap();
        assert_eq!(last["choices"].as_array().unwrap().len(), 0, "the usage chunk has no choices");
        assert_eq!(last["usage"]["completion_tokens"], usage["completion_tokens"]);
        let finish = &streamed.chunks[streamed.chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], choice["finish_reason"]);

        // The same request in non-SI gives the same text (lossless).
        let mut nonsi = request.clone();
        nonsi["mode"] = json!("nonsi");
        let nonsi: Value = client.post(server.url("/v1/completions")).json(&nonsi).send().await.unwrap().json().await.unwrap();
        assert_eq!(nonsi["choices"][0]["text"], choice["text"]);
        assert_eq!(nonsi["usage"]["draft_tokens"], 0);

        // The default is auto: the same text, and usage says what it chose
        // and why.
        let mut auto = request.clone();
        auto.as_object_mut().unwrap().remove("mode");
        let auto: Value = client.post(server.url("/v1/completions")).json(&auto).send().await.unwrap().json().await.unwrap();
        assert_eq!(auto["choices"][0]["text"], choice["text"]);
        let chosen = &auto["usage"]["auto"];
        assert!(!chosen["decisions"].as_array().unwrap().is_empty(), "{auto}");
        assert!(chosen["decisions"][0]["alternatives"][0]["ms_per_token"].as_f64().unwrap() > 0.0);
        assert!(["nonsi", "si", "dsi"].contains(&auto["usage"]["mode"].as_str().unwrap()));
        assert!(auto["usage"]["policy"].as_str().unwrap().starts_with(auto["usage"]["mode"].as_str().unwrap()));

        // Stop strings cut the text before them.
        let text = choice["text"].as_str().unwrap();
        if let Some(stop) = text.get(4..6).filter(|s| !s.trim().is_empty()) {
            let mut stopped = request.clone();
            stopped["stop"] = json!([stop]);
            let stopped: Value = client.post(server.url("/v1/completions")).json(&stopped).send().await.unwrap().json().await.unwrap();
            let cut = stopped["choices"][0]["text"].as_str().unwrap();
            assert_eq!(cut, &text[..text.find(stop).unwrap()]);
            assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
            assert_eq!(stopped["usage"]["mode"], "dsi", "usage is kept: {stopped}");
            assert!(stopped["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
        }

        // Chat, whole and streamed (plain template: the pair has none).
        let chat = json!({"messages": [{"role": "user", "content": "def mul(a, b):"}], "max_tokens": 12, "seed": 3, "temperature": 0.7});
        let whole_chat: Value = client.post(server.url("/v1/chat/completions")).json(&chat).send().await.unwrap().json().await.unwrap();
        assert_eq!(whole_chat["object"], "chat.completion");
        assert_eq!(whole_chat["choices"][0]["message"]["role"], "assistant");
        let mut chat_stream = chat.clone();
        chat_stream["stream"] = json!(true);
        let streamed_chat = stream(&client, &server.url("/v1/chat/completions"), &chat_stream).await;
        assert!(streamed_chat.done);
        assert_eq!(streamed_chat.chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(streamed_chat.chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            streamed_chat.text,
            whole_chat["choices"][0]["message"]["content"].as_str().unwrap(),
            "seeded sampling repeats"
        );

        // An omitted seed is a fresh one per request, returned in usage:
        // two unseeded sampled requests differ, and the returned seed
        // replays a response exactly.
        let unseeded = json!({"prompt": "def f(x):", "max_tokens": 24, "temperature": 1.0, "mode": "nonsi"});
        let first: Value = client.post(server.url("/v1/completions")).json(&unseeded).send().await.unwrap().json().await.unwrap();
        let second: Value = client.post(server.url("/v1/completions")).json(&unseeded).send().await.unwrap().json().await.unwrap();
        let seed = first["usage"]["seed"].as_u64().expect("usage.seed");
        assert_ne!(seed, second["usage"]["seed"].as_u64().unwrap());
        assert_ne!(first["choices"][0]["text"], second["choices"][0]["text"], "unseeded requests differ");
        let mut replay = unseeded.clone();
        replay["seed"] = json!(seed);
        replay["mode"] = json!("dsi");
        let replayed: Value = client.post(server.url("/v1/completions")).json(&replay).send().await.unwrap().json().await.unwrap();
        assert_eq!(replayed["choices"][0]["text"], first["choices"][0]["text"], "the seed replays it, in any mode");
        assert_eq!(replayed["usage"]["seed"], seed);

        // Metrics counted all of it.
        let metrics = scrape(&client, &server).await;
        assert!(metric(&metrics, "dsi_requests_total{endpoint=\"completions\",status=\"200\"}").unwrap() >= 3.0);
        assert!(metric(&metrics, "dsi_requests_total{endpoint=\"chat\",status=\"200\"}").unwrap() >= 2.0);
        assert!(metric(&metrics, "dsi_generated_tokens_total").unwrap() > 0.0);
        assert!(metric(&metrics, "dsi_draft_tokens_total").unwrap() > 0.0);
        assert!(metric(&metrics, "dsi_acceptance_by_position{position=\"0\"}").is_some());
        assert!(metric(&metrics, "dsi_time_to_first_token_seconds_count").unwrap() >= 5.0);
        assert!(metric(&metrics, "dsi_time_per_output_token_seconds_count").unwrap() >= 5.0);
        assert_eq!(metric(&metrics, "dsi_queue_depth"), Some(0.0));
        assert!(metric(&metrics, "dsi_preempted_jobs_total").is_some());
        // Every worker's forwards: batch sizes, rows and time.
        let forwards = metric(&metrics, "dsi_forward_sequences_count{worker=\"cpu#0\"}").unwrap();
        assert!(forwards > 0.0);
        assert!(metric(&metrics, "dsi_forward_rows_sum{worker=\"cpu#0\"}").unwrap() >= forwards);
        assert!(metric(&metrics, "dsi_forward_seconds_sum{worker=\"cpu#0\"}").unwrap() > 0.0);

        // The dashboard and its data.
        let page = client.get(server.url("/")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("<svg id=\"timeline\""));
        for asset in ["/app.js", "/timeline.js", "/heatmap.js", "/race.js", "/style.css"] {
            assert_eq!(client.get(server.url(asset)).send().await.unwrap().status(), 200, "{asset}");
        }
        let info: Value = client.get(server.url("/v1/dashboard/info")).send().await.unwrap().json().await.unwrap();
        assert_eq!(info["targets"].as_array().unwrap().len(), 2);
        assert!(info["operating_point"]["a"].as_f64().unwrap() > 0.0);
        let race: Value = client
            .post(server.url("/v1/dashboard/race"))
            .json(&json!({"prompt": "def add(a, b):", "max_tokens": 8}))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(race["identical"], true, "{race}");
        // Non-SI, SI, DSI and auto, in a rotating order.
        assert_eq!(race["runs"].as_array().unwrap().len(), 4);
        assert_eq!(race["order"].as_array().unwrap().len(), 4);
        assert!(race["runs"][3]["auto"]["decisions"].is_array(), "{race}");
    });
}

#[test]
fn invalid_requests_get_openai_errors_and_the_server_keeps_serving() {
    let server = Server::start(&[
        "--max-prompt-tokens",
        "16",
        "--max-tokens",
        "64",
        "--max-body-bytes",
        "4096",
    ]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let url = server.url("/v1/completions");
        let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
            (
                "malformed JSON",
                client.post(&url).body("{\"prompt\": \"x\","),
                400,
                "not valid JSON",
            ),
            (
                "wrong type",
                client
                    .post(&url)
                    .body(r#"{"prompt": "x", "max_tokens": "ten"}"#),
                400,
                "does not match the schema",
            ),
            (
                "missing prompt",
                client.post(&url).json(&json!({"max_tokens": 3})),
                400,
                "prompt",
            ),
            (
                "unknown model",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "model": "gpt-9"})),
                404,
                "does not exist",
            ),
            (
                "over-long prompt",
                client
                    .post(&url)
                    .json(&json!({"prompt": "def f(x):\n    return x\n".repeat(20)})),
                400,
                "at most 16",
            ),
            (
                "max_tokens too large",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "max_tokens": 65})),
                400,
                "1 to 64",
            ),
            (
                "max_tokens zero",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "max_tokens": 0})),
                400,
                "out of range",
            ),
            (
                "n > 1",
                client.post(&url).json(&json!({"prompt": "x", "n": 2})),
                400,
                "n = 2",
            ),
            (
                "body too large",
                client.post(&url).json(&json!({"prompt": "x".repeat(5000)})),
                413,
                "larger than 4096",
            ),
            (
                "bad temperature",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "temperature": 3})),
                400,
                "temperature",
            ),
            (
                "bad top_p",
                client.post(&url).json(&json!({"prompt": "x", "top_p": 0})),
                400,
                "top_p",
            ),
            (
                "bad mode",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "mode": "fast"})),
                400,
                "mode",
            ),
            (
                "bad lookahead",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "lookahead": 0})),
                400,
                "lookahead",
            ),
            (
                "too many targets",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "targets": 9})),
                400,
                "targets",
            ),
            (
                "several prompts",
                client.post(&url).json(&json!({"prompt": ["a", "b"]})),
                400,
                "one per request",
            ),
            (
                "five stops",
                client
                    .post(&url)
                    .json(&json!({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})),
                400,
                "stop",
            ),
            (
                "empty chat",
                client
                    .post(server.url("/v1/chat/completions"))
                    .json(&json!({"messages": []})),
                400,
                "messages",
            ),
            (
                "unknown route",
                client.get(server.url("/v2/nothing")),
                404,
                "no route",
            ),
            ("wrong method", client.get(&url), 405, "not allowed"),
        ];
        for (name, request, status, needle) in cases {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{name}");
            let body: Value = response
                .json()
                .await
                .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            let error = &body["error"];
            let message = error["message"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {body}"));
            assert!(message.contains(needle), "{name}: {message}");
            assert!(error["type"].is_string(), "{name}: {body}");
        }
        // Still serving.
        let ok = client
            .post(&url)
            .json(&json!({"prompt": "def f(x):", "max_tokens": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let metrics = scrape(&client, &server).await;
        assert!(
            metric(
                &metrics,
                "dsi_requests_total{endpoint=\"completions\",status=\"400\"}"
            )
            .unwrap()
                >= 10.0
        );
        assert_eq!(
            metric(
                &metrics,
                "dsi_requests_total{endpoint=\"completions\",status=\"413\"}"
            ),
            Some(1.0)
        );
    });
}

#[test]
fn a_client_that_disconnects_mid_stream_cancels_its_work() {
    // A slow (emulated) target keeps the generation running long after the
    // client is gone, unless it is cancelled.
    let server = Server::start(&["--emulate-target-ms", "20,20", "--max-tokens", "400"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let body = json!({"prompt": "def f(x):", "max_tokens": 400, "stream": true});
        let mut response = client
            .post(server.url("/v1/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let first = response.chunk().await.unwrap().unwrap();
        assert!(std::str::from_utf8(&first).unwrap().starts_with("data: "));
        drop(response);
        drop(client);
        let client = reqwest::Client::new();
        let began = Instant::now();
        loop {
            let metrics = scrape(&client, &server).await;
            let gone = metric(
                &metrics,
                "dsi_requests_total{endpoint=\"completions\",status=\"499\"}",
            );
            if gone == Some(1.0) && metric(&metrics, "dsi_active_generations") == Some(0.0) {
                // 400 tokens at >= 20 ms each would take 8 s; cancellation ends it far sooner.
                let generated = metric(&metrics, "dsi_generated_tokens_total").unwrap();
                assert!(
                    generated < 400.0,
                    "{generated} tokens: the generation ran to the end"
                );
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "not cancelled:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The workers are free for the next request.
        let ok = client
            .post(server.url("/v1/completions"))
            .json(&json!({"prompt": "x = ", "max_tokens": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    });
}

#[test]
fn sigterm_drains_in_flight_work_and_refuses_new_requests() {
    let mut server = Server::start(&["--emulate-target-ms", "20,20", "--drain-grace-s", "20"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let in_flight = slow_stream(&client, &server, 40).await;
        server.terminate();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = client
            .post(server.url("/v1/completions"))
            .header("connection", "close")
            .json(&json!({"prompt": "x", "max_tokens": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        assert!(refused.headers().contains_key("retry-after"));
        let health = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 503);
        let finished = in_flight.await.unwrap();
        assert!(finished.done && finished.error.is_none(), "{finished:?}");
        let finish = finished
            .chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str());
        assert_eq!(
            finish,
            Some("length"),
            "the in-flight generation ran to its end"
        );
        assert!(!finished.text.is_empty());
    });
    assert_eq!(
        server.wait_exit(Duration::from_secs(15)),
        Some(0),
        "the server exits after draining"
    );
}

/// Starts a streamed non-SI generation of `max_tokens` and waits until it
/// runs.
async fn slow_stream(
    client: &reqwest::Client,
    server: &Server,
    max_tokens: usize,
) -> tokio::task::JoinHandle<serving::Streamed> {
    let body =
        json!({"prompt": "def f(x):", "max_tokens": max_tokens, "stream": true, "mode": "nonsi"});
    let url = server.url("/v1/completions");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { stream(&client, &url, &body).await }
    });
    wait_running(client, server, 1).await;
    in_flight
}

/// Waits until `n` generations run.
async fn wait_running(client: &reqwest::Client, server: &Server, n: usize) {
    let began = Instant::now();
    loop {
        let metrics = scrape(client, server).await;
        if metric(&metrics, "dsi_active_generations") == Some(n as f64) {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{n} generations never ran:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_drain_that_runs_out_of_grace_cancels_what_is_left() {
    let mut server = Server::start(&["--emulate-target-ms", "20,20", "--drain-grace-s", "0.5"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        // 300 tokens at >= 20 ms each cannot finish within the grace.
        let in_flight = slow_stream(&client, &server, 300).await;
        server.terminate();
        let cut = in_flight.await.unwrap();
        assert!(cut.done, "the stream is closed properly");
        let error = cut.error.expect("an error event says why the stream ended");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shut down"),
            "{error}"
        );
    });
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn a_request_past_its_deadline_gets_504() {
    let server = Server::start(&["--emulate-target-ms", "50,50", "--request-timeout-s", "0.5"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let url = server.url("/v1/completions");
        let slow = json!({"prompt": "def f(x):", "max_tokens": 200, "mode": "nonsi"});
        let response = client.post(&url).json(&slow).send().await.unwrap();
        assert_eq!(response.status(), 504);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "timeout");
        // Streamed: the deadline ends the stream with an error event.
        let mut streamed = slow.clone();
        streamed["stream"] = json!(true);
        let cut = stream(&client, &url, &streamed).await;
        assert!(cut.done);
        assert_eq!(cut.error.unwrap()["error"]["code"], "timeout");
        // A short request still fits.
        let quick = client
            .post(&url)
            .json(&json!({"prompt": "x", "max_tokens": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(quick.status(), 200);
    });
}

#[test]
fn a_taken_port_or_bad_flags_fail_with_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dsi"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap()
    };
    let busy = run(&["--addr", &addr]);
    assert_eq!(busy.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    let zero = run(&["--max-running", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("max-running"));
    let grace = run(&["--drain-grace-s", "-1"]);
    assert_eq!(grace.status.code(), Some(2));
}

#[test]
fn chat_applies_the_models_own_template() {
    // A copy of a fixture checkpoint with a chat template of its own.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dsi-models/tests/fixtures/llama-gqa"
    );
    let dir = std::env::temp_dir().join(format!("dsi-chat-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": template, "bos_token": "<s>", "eos_token": "</s>"}).to_string(),
    )
    .unwrap();
    let server = Server::start(&["--model", dir.to_str().unwrap(), "--model-name", "tiny"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let messages = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"}
        ]);
        let chat: Value = client
            .post(server.url("/v1/chat/completions"))
            .json(&json!({"model": "tiny", "messages": messages, "max_tokens": 6}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The same prompt rendered by hand, as a plain completion.
        let rendered = "<system>Be brief.\n<user>Hello there\n<assistant>";
        let plain: Value = client
            .post(server.url("/v1/completions"))
            .json(&json!({"model": "tiny", "prompt": rendered, "max_tokens": 6}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            chat["usage"]["prompt_tokens"], plain["usage"]["prompt_tokens"],
            "{chat}"
        );
        assert_eq!(
            chat["choices"][0]["message"]["content"],
            plain["choices"][0]["text"]
        );
        assert_eq!(chat["usage"]["mode"], "nonsi", "no drafter given");
        // A template error is the client's 400, not a crash.
        let empty = client
            .post(server.url("/v1/chat/completions"))
            .json(&json!({"model": "tiny", "messages": [{"role": "user"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(empty.status(), 400);
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// The bundled target's first cache segment (about 4 MiB) holds 688
/// positions; a request that needs more cannot fit a 5 MiB budget even
/// alone, so it is refused up front with the numbers, not queued forever.
#[test]
fn a_request_over_the_kv_budget_is_refused_with_the_numbers() {
    let server = Server::start(&["--kv-cache-mib", "5", "--mode", "nonsi"]);
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let url = server.url("/v1/completions");
        let refused = client
            .post(&url)
            .json(&json!({"prompt": "def f(x):", "max_tokens": 700}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let body: Value = refused.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        for part in [
            "plus max_tokens 700",
            "MiB of KV cache",
            "budget of 5.0 MiB",
            "--kv-cache-mib",
        ] {
            assert!(message.contains(part), "{part:?} missing: {message}");
        }
        let served = client
            .post(&url)
            .json(&json!({"prompt": "def f(x):", "max_tokens": 8}))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200);
        let body: Value = served.json().await.unwrap();
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    });
}

#[test]
fn each_request_is_one_structured_log_line() {
    let dir = std::env::temp_dir().join(format!("dsi-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.jsonl");
    let file = std::fs::File::create(&log).unwrap();
    let server = Server::start_with_stderr(&["--log-format", "json"], file.into());
    let rt = runtime();
    let id = rt.block_on(async {
        let client = reqwest::Client::new();
        let url = server.url("/v1/completions");
        let ok: Value = client
            .post(&url)
            .json(&json!({"prompt": "def add(a, b):", "max_tokens": 8, "mode": "si"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let refused = client
            .post(&url)
            .json(&json!({"prompt": "x", "colour": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        ok["id"].as_str().unwrap().to_string()
    });
    drop(server);
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let finished: Vec<&Value> = lines.iter().filter(|l| l["id"] == id.as_str()).collect();
    assert_eq!(finished.len(), 1, "one line for the request: {lines:?}");
    let line = finished[0];
    assert_eq!(line["status"], 200);
    assert_eq!(line["mode"], "si");
    assert_eq!(line["completion_tokens"], 8);
    assert_eq!(line["level"], "INFO");
    assert!(line["ttft_ms"].as_f64().unwrap() > 0.0 && line["duration_ms"].as_f64().is_some());
    let refused = lines
        .iter()
        .find(|l| l["status"] == 400)
        .expect("the refusal is logged");
    assert_eq!(refused["param"], "colour");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keys_from_a_file_and_the_environment_and_protected_metrics() {
    let dir = std::env::temp_dir().join(format!("dsi-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys");
    std::fs::write(&file, "# one key per line\nsk-file\n\n").unwrap();
    let server = Server::start_custom(
        "127.0.0.1:0",
        &[
            "--api-key-file",
            file.to_str().unwrap(),
            "--protect-metrics",
        ],
        std::process::Stdio::inherit(),
        &[("DSI_API_KEY", "sk-env")],
    );
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for path in ["/v1/models", "/metrics", "/healthz"] {
            let open = client.get(server.url(path)).send().await.unwrap();
            assert_eq!(open.status(), 401, "{path} needs a key");
            let body: Value = open.json().await.unwrap();
            assert_eq!(body["error"]["code"], "invalid_api_key");
            for key in ["sk-file", "sk-env"] {
                let keyed = client
                    .get(server.url(path))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(keyed.status(), 200, "{path} with {key}");
            }
        }
        let page = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(page.status(), 200, "the dashboard page stays open");
        let timeline = server.url("/v1/dashboard/timeline?api_key=sk-env");
        let events = client.get(timeline).send().await.unwrap();
        assert_eq!(
            events.status(),
            200,
            "the timeline takes the key as a query parameter"
        );
        let query = server.url("/v1/models?api_key=sk-env");
        assert_eq!(
            client.get(query).send().await.unwrap().status(),
            401,
            "only the timeline does"
        );
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn serving_beyond_loopback_without_a_key_warns() {
    let log = std::env::temp_dir().join(format!("dsi-warn-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let server = Server::start_custom("0.0.0.0:0", &[], file.into(), &[]);
    drop(server);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("without an API key"), "{stderr}");
    std::fs::remove_file(&log).ok();
}
