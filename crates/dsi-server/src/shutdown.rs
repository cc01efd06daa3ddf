//! Draining: after SIGTERM new requests get 503 while in-flight generations
//! finish; whatever still runs when the grace period ends is cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// The server's shutdown state.
#[derive(Debug)]
pub struct Shutdown {
    draining: AtomicBool,
    cancel: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            draining: AtomicBool::new(false),
            cancel: watch::channel(false).0,
        }
    }
}

impl Shutdown {
    /// True once draining began: refuse new work.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Cancels every generation and ends every live stream.
    pub fn cancel_all(&self) {
        self.drain();
        self.cancel.send_replace(true);
    }

    /// Resolves when [`cancel_all`](Self::cancel_all) is called.
    pub fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.cancel.subscribe();
        async move {
            // An error means the sender is gone: the server is gone too.
            let _ = rx.wait_for(|&c| c).await;
        }
    }
}
