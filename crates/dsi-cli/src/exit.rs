//! The one place where errors become exit codes and messages.

/// Exit code for input the user can fix: bad flags, out-of-range values.
pub(crate) const USAGE: u8 = 2;
/// Exit code for a failure while running (IO, drawing).
pub(crate) const FAILURE: u8 = 1;

/// An error caused by the command line itself, not by the run.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// [`USAGE`] when the root cause is invalid input, else [`FAILURE`].
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    let invalid_input = err.chain().any(|cause| {
        cause.downcast_ref::<UsageError>().is_some()
            || cause.downcast_ref::<dsi_core::Error>().is_some()
            || cause
                .downcast_ref::<dsi_models::ModelError>()
                .is_some_and(|e| !matches!(e, dsi_models::ModelError::Readback(_)))
            || cause
                .downcast_ref::<dsi_sched::SchedError>()
                .is_some_and(|e| !matches!(e, dsi_sched::SchedError::Spawn { .. }))
    });
    if invalid_input { USAGE } else { FAILURE }
}

/// The error and its causes on one line: `context: cause: root cause`.
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
