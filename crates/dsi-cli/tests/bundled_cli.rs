//! The bundled pair (models/pystd) out of the box: the README's run command
//! (`--mode auto`) and the issues' bars.

mod common;

use common::{dsi, stderr};

fn json(args: &[&str]) -> serde_json::Value {
    let out = dsi(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn generate_with_no_model_runs_auto_on_the_bundled_pair_losslessly() {
    let prompt = "def fibonacci(n):";
    let run = |mode: Option<&str>| {
        let mut args = vec!["generate", "--max-tokens", "48", "--format", "json"];
        if let Some(mode) = mode {
            args.extend(["--mode", mode]);
        }
        args.push(prompt);
        json(&args)
    };
    // The README's command: auto, which measures the pool once and then
    // says what it chose and why.
    let auto_run = run(None);
    let nonsi = run(Some("nonsi"));
    let dsi_run = run(Some("dsi"));
    assert_eq!(auto_run["tokens"], nonsi["tokens"]);
    assert_eq!(dsi_run["tokens"], nonsi["tokens"]);
    assert!(auto_run["profile"].is_string(), "{auto_run}");
    let auto = &auto_run["stats"]["auto"];
    let first = &auto["decisions"][0];
    assert!(["nonsi", "si", "dsi"].contains(&first["policy"]["mode"].as_str().expect("mode")));
    let modes: Vec<&str> = first["alternatives"]
        .as_array()
        .expect("alternatives")
        .iter()
        .map(|r| r["policy"]["mode"].as_str().expect("mode"))
        .collect();
    assert_eq!(
        modes,
        ["nonsi", "si", "dsi"],
        "the best of every mode, predicted"
    );
    assert_eq!(auto_run["mode"], auto_run["stats"]["mode"]);

    assert_eq!(dsi_run["mode"], "dsi");
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
