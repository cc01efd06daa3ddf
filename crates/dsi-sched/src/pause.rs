//! Sleeping on a worker thread without missing a cancellation.

use dsi_core::cancel::CancelFlag;
use dsi_core::model::ForwardError;
use std::time::{Duration, Instant};

/// How often a sleeping worker looks at its cancellation flag.
const CHECK_EVERY: Duration = Duration::from_micros(500);

/// Blocks until `deadline`, or returns [`ForwardError::Cancelled`] within
/// [`CHECK_EVERY`] of `cancel` being raised.
pub(crate) fn sleep_until(deadline: Instant, cancel: &CancelFlag) -> Result<(), ForwardError> {
    loop {
        if cancel.is_cancelled() {
            return Err(ForwardError::Cancelled);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(CHECK_EVERY));
    }
}
