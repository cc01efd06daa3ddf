//! The fuzzers' corpora and findings, replayed on stable in CI: every file
//! of `fuzz/corpus/TARGET/` (inputs the fuzzers kept for their coverage)
//! and `fuzz/regressions/TARGET/` (inputs that once failed, kept after the
//! fix) runs through the same target body libFuzzer runs
//! (`fuzz/targets/`). `scripts/fuzz.sh SECONDS` runs the fuzzers.

#![allow(clippy::unwrap_used, unreachable_pub)]

#[path = "../fuzz/targets/mod.rs"]
mod targets;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            inputs += 1;
        }
    }
    assert!(inputs > 0, "{target} has no corpus in fuzz/corpus/{target}");
}

#[test]
fn request_corpus() {
    replay("request", targets::request::run);
}

#[test]
fn checkpoint_corpus() {
    replay("checkpoint", targets::checkpoint::run);
}

#[test]
fn chat_corpus() {
    replay("chat", targets::chat::run);
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer", targets::tokenizer::run);
}

#[test]
fn detokenize_corpus() {
    replay("detokenize", targets::detokenize::run);
}

#[test]
fn stop_scan_corpus() {
    replay("stop_scan", targets::stop_scan::run);
}
