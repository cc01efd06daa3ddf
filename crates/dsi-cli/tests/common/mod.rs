//! Running the `dsi` binary from integration tests.

use std::process::{Command, Output};

/// Runs `dsi` with `args` and waits for it.
pub(crate) fn dsi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsi"))
        .args(args)
        .output()
        .expect("the dsi binary runs")
}

/// What the run printed on stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
