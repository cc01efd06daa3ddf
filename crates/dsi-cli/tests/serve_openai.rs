//! The official `openai` Python client (the reference client) against
//! `dsi serve` with an API key: `tests/openai_client.py` covers
//! completions, chat, streaming, log probabilities, penalties, seeds,
//! token-id prompts, keys, /tokenize and every refused field.
//!
//! scripts/setup.sh installs the client into `target/openai-venv`
//! (`$DSI_OPENAI_VENV` to put it elsewhere).

#![allow(clippy::unwrap_used)]

mod serving;

use serving::Server;
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let venv = std::env::var_os("DSI_OPENAI_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openai-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the openai Python client is not installed at {}: run scripts/setup.sh",
        venv.display()
    );
    python
}

#[test]
fn the_openai_python_client_gets_what_it_asks_for() {
    let python = python();
    let server = Server::start(&["--api-key", "sk-test-one", "--api-key", "sk-test-two"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let output = Command::new(python)
        .arg(script)
        .args([&server.base, "sk-test-two"])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    println!("{stdout}");
}
