//! Running the `dsi` binary from integration tests.

use std::process::{Command, Output};

/// Runs `dsi` with `args` and waits for it.
pub(crate) fn dsi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsi"))
        .args(args)
        .output()
        .expect("the dsi binary runs")
}

/// Runs `dsi` with `args` and extra environment variables.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub(crate) fn dsi_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsi"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the dsi binary runs")
}

/// What the run printed on stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
