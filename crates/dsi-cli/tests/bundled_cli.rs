//! The bundled pair (models/pystd) out of the box: the README's run command
//! and the bars.

mod common;

use common::{dsi, stderr};

fn json(args: &[&str]) -> serde_json::Value {
    let out = dsi(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn generate_with_no_model_runs_dsi_on_the_bundled_pair_losslessly() {
    let prompt = "def fibonacci(n):";
    let dsi_run = json(&["generate", "--max-tokens", "48", "--format", "json", prompt]);
    let nonsi = json(&[
        "generate",
        "--mode",
        "nonsi",
        "--max-tokens",
        "48",
        "--format",
        "json",
        prompt,
    ]);
    assert_eq!(dsi_run["mode"], "dsi");
    assert_eq!(dsi_run["tokens"], nonsi["tokens"]);
    assert!(dsi_run["stats"]["drafts"].as_u64().expect("drafts") > 0);
    assert!(
        dsi_run["stats"]["accepted_tokens"]
            .as_u64()
            .expect("accepted")
            > 0
    );
    let text = dsi_run["text"].as_str().expect("text");
    assert!(!text.trim().is_empty(), "the continuation is empty");
}

#[test]
fn the_bundled_pair_meets_the_acceptance_bar() {
    let report = json(&["measure", "acceptance", "--format", "json"]);
    let a = report["acceptance_rate"].as_f64().expect("acceptance_rate");
    assert!(
        a >= 0.6,
        "acceptance rate {a} is below the 0.6 bar: {report}"
    );
}
