//! Sleeping on a worker thread without missing a cancellation.

use std::time::{Duration, Instant};

/// How often a sleeping worker looks at its cancellation flags.
const CHECK_EVERY: Duration = Duration::from_micros(500);

/// Blocks until `deadline`, or returns false within [`CHECK_EVERY`] of
/// `stop` turning true.
pub(crate) fn sleep_until(deadline: Instant, stop: impl Fn() -> bool) -> bool {
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(CHECK_EVERY));
    }
}
