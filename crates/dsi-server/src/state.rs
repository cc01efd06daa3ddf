//! What every handler shares.

use crate::admission::Admission;
use crate::codec::TextCodec;
use crate::config::ServerConfig;
use crate::metrics::{Gauges, Metrics};
use crate::shutdown::Shutdown;
use dsi_sched::Pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The pool, the codec, the limits and the counters.
pub struct State {
    /// The scheduler's workers.
    pub pool: Arc<Pool>,
    /// Text in and out.
    pub codec: Arc<dyn TextCodec>,
    /// Settings.
    pub config: ServerConfig,
    /// Slots and queue.
    pub admission: Arc<Admission>,
    /// `/metrics`.
    pub metrics: Metrics,
    /// Draining and cancellation.
    pub shutdown: Shutdown,
    /// The dashboard's heatmap cells, computed on first use.
    pub heatmap: tokio::sync::OnceCell<Vec<serde_json::Value>>,
    serial: AtomicU64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl State {
    /// State over a pool and a codec.
    pub fn new(pool: Arc<Pool>, codec: Arc<dyn TextCodec>, config: ServerConfig) -> Self {
        Self {
            admission: Admission::new(config.max_running, config.max_queue),
            pool,
            codec,
            config,
            metrics: Metrics::default(),
            shutdown: Shutdown::default(),
            heatmap: tokio::sync::OnceCell::new(),
            serial: AtomicU64::new(0),
        }
    }

    /// A number for response ids.
    pub fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Queue depth and running generations now.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            queued: self.admission.queued(),
            running: self.admission.running(),
            kv: self.pool.kv_memory(),
            kv_waiting: self.pool.kv_waiting(),
            forwards: {
                let (drafter, targets) = self.pool.workers();
                drafter
                    .into_iter()
                    .chain(targets)
                    .filter_map(|w| Some((w.name().to_string(), w.forwards()?)))
                    .collect()
            },
        }
    }
}
