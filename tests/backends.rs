//! The backends this test run uses, and whether each can start here.
//!
//! `scripts/test.sh` runs this first with `--nocapture`, so a run says which
//! backends it covers (and on which adapter) before the long suites start,
//! and a missing driver fails in seconds with the line that names the fix.

use dsi::models::test_backends;

#[test]
fn every_selected_backend_starts() {
    let selected = test_backends::selected();
    let left_out: Vec<String> = test_backends::built()
        .into_iter()
        .filter(|spec| !selected.contains(spec))
        .map(|spec| spec.to_string())
        .collect();
    let mut lines = Vec::new();
    for &spec in selected {
        let device = test_backends::available(spec).unwrap_or_else(|err| panic!("{err}"));
        lines.push(format!("  {spec}: {device}"));
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("test backends ({}):", source());
        eprintln!("{}", lines.join("\n"));
        if !left_out.is_empty() {
            eprintln!("  left out (not run): {}", left_out.join(", "));
        }
    }
}

fn source() -> String {
    match std::env::var(test_backends::VAR) {
        Ok(list) => format!("{}={list}", test_backends::VAR),
        Err(_) => format!("every backend built; set {} to choose", test_backends::VAR),
    }
}
