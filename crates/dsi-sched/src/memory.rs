//! One KV-memory budget per device, reserved before a request starts.
//!
//! A request reserves, on each device, the bytes its caches there can reach:
//! for every worker it may use, the cache that holds its prompt, its
//! `max_new_tokens` and one lookahead of drafts (whole segments, see
//! `dsi_core::cache_layout`). Caches grow only as positions arrive, so what
//! they hold is at most what was reserved, and the sum over a device never
//! exceeds its budget.
//!
//! # Admission
//! 1. A request that cannot fit on some device even alone is refused with
//!    the numbers ([`KvBudget::check`]).
//! 2. Otherwise it takes a ticket and waits its turn: requests are admitted
//!    first come, first served, so a large one is not starved by small ones.
//! 3. The reservation is returned when the last holder drops it: the request
//!    itself and every worker's release of its cache (a worker frees the
//!    cache before it drops its share), so memory is back before the next
//!    request may use it.
//!
//! Reserving up front means a running request never meets a full device: it
//! is never aborted or preempted for memory, and a waiting one costs nothing.

use crate::error::{Result, SchedError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Bytes per mebibyte, for messages.
const MIB: f64 = (1u64 << 20) as f64;

/// Budget and use of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMemory {
    /// The device, as workers are named (`cpu`, `cuda:1`).
    pub device: String,
    /// Bytes all caches on the device may take together.
    pub budget: usize,
    /// Bytes reserved by admitted requests.
    pub reserved: usize,
    /// The most ever reserved at once.
    pub peak_reserved: usize,
}

#[derive(Debug)]
struct State {
    devices: Vec<DeviceMemory>,
    queue: VecDeque<u64>,
    next_ticket: u64,
    waited: u64,
}

/// The KV budgets of a pool's devices and the queue of requests waiting for
/// memory.
#[derive(Debug)]
pub struct KvBudget {
    state: Mutex<State>,
    changed: Notify,
}

/// Bytes one request needs on each device.
pub(crate) type Need = Vec<(String, usize)>;

impl KvBudget {
    /// Budgets per device name.
    pub fn new(budgets: impl IntoIterator<Item = (String, usize)>) -> Self {
        let devices = budgets
            .into_iter()
            .map(|(device, budget)| DeviceMemory {
                device,
                budget,
                reserved: 0,
                peak_reserved: 0,
            })
            .collect();
        Self {
            state: Mutex::new(State {
                devices,
                queue: VecDeque::new(),
                next_ticket: 0,
                waited: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every early return: no panic
        // while it is held can leave it half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Budget and use of every device.
    pub fn devices(&self) -> Vec<DeviceMemory> {
        self.lock().devices.clone()
    }

    /// Requests waiting for memory now.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Requests that had to wait for memory, ever.
    pub fn waited(&self) -> u64 {
        self.lock().waited
    }

    /// Refuses a need that no device could meet even with nothing else held.
    /// `what` describes the request for the message.
    pub(crate) fn check(&self, need: &Need, what: &str) -> Result<()> {
        let state = self.lock();
        for (device, bytes) in need {
            if let Some(d) = state.devices.iter().find(|d| &d.device == device)
                && *bytes > d.budget
            {
                return Err(SchedError::Unfit(format!(
                    "{what} needs {:.1} MiB of KV cache on {device}, more than its budget of \
                     {:.1} MiB: shorten the prompt or max_tokens, or raise --kv-cache-mib",
                    *bytes as f64 / MIB,
                    d.budget as f64 / MIB
                )));
            }
        }
        Ok(())
    }

    /// Waits its turn and reserves `need`. Dropping the future gives up the
    /// place in the queue.
    pub(crate) async fn reserve(self: &Arc<Self>, need: Need) -> Reservation {
        let ticket = {
            let mut state = self.lock();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back(ticket);
            ticket
        };
        let mut place = Place {
            budget: self,
            ticket: Some(ticket),
        };
        let mut counted = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.queue.front() == Some(&ticket) && fits(&state, &need) {
                    for (device, bytes) in &need {
                        if let Some(d) = state.devices.iter_mut().find(|d| &d.device == device) {
                            d.reserved += bytes;
                            d.peak_reserved = d.peak_reserved.max(d.reserved);
                        }
                    }
                    state.queue.pop_front();
                    place.ticket = None;
                    drop(state);
                    // The next in line may fit too.
                    self.changed.notify_waiters();
                    return Reservation {
                        _held: Arc::new(Held {
                            budget: Arc::clone(self),
                            need,
                        }),
                    };
                }
                if !counted {
                    state.waited += 1;
                    counted = true;
                }
            }
            changed.await;
        }
    }
}

fn fits(state: &State, need: &Need) -> bool {
    need.iter().all(|(device, bytes)| {
        state
            .devices
            .iter()
            .find(|d| &d.device == device)
            .is_none_or(|d| d.reserved + bytes <= d.budget)
    })
}

/// A place in the queue, given up if the waiting future is dropped.
struct Place<'a> {
    budget: &'a Arc<KvBudget>,
    ticket: Option<u64>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            self.budget.lock().queue.retain(|&t| t != ticket);
            self.budget.changed.notify_waiters();
        }
    }
}

#[derive(Debug)]
struct Held {
    budget: Arc<KvBudget>,
    need: Need,
}

impl Drop for Held {
    fn drop(&mut self) {
        {
            let mut state = self.budget.lock();
            for (device, bytes) in &self.need {
                if let Some(d) = state.devices.iter_mut().find(|d| &d.device == device) {
                    d.reserved -= bytes;
                }
            }
        }
        self.budget.changed.notify_waiters();
    }
}

/// Memory reserved for one request; returned when the last clone drops.
#[derive(Debug, Clone)]
pub struct Reservation {
    _held: Arc<dyn std::fmt::Debug + Send + Sync>,
}

impl Reservation {
    /// A reservation of no memory that tells `freed` when its last clone
    /// drops: how a worker serving another process learns that a
    /// request's cache is gone (a worker drops a release's reservation
    /// once it freed the cache).
    pub fn watch() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (freed, watch) = tokio::sync::oneshot::channel();
        let held = Arc::new(Watched(Some(freed)));
        (Self { _held: held }, watch)
    }
}

/// The inside of [`Reservation::watch`].
#[derive(Debug)]
struct Watched(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(freed) = self.0.take() {
            let _ = freed.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn need(bytes: usize) -> Need {
        vec![("cpu".to_string(), bytes)]
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_their_turn_and_memory_comes_back() {
        let budget = Arc::new(KvBudget::new([("cpu".to_string(), 100)]));
        let first = budget.reserve(need(60)).await;
        assert!(budget.check(&need(101), "a request").is_err());
        assert!(budget.check(&need(100), "a request").is_ok());

        // 50 does not fit beside 60: it waits, and a small one behind it
        // waits too (first come, first served).
        let big = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(need(50)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let small = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(need(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(budget.waiting(), 2);
        assert!(!big.is_finished() && !small.is_finished());

        // The reservation comes back only when its last holder drops it.
        let worker_share = first.clone();
        drop(first);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(budget.waiting(), 2);
        drop(worker_share);
        let big = big.await.unwrap();
        let small = small.await.unwrap();
        assert_eq!(budget.devices()[0].reserved, 60);
        assert_eq!(budget.devices()[0].peak_reserved, 60);
        assert_eq!(budget.waited(), 2);
        drop((big, small));
        assert_eq!(budget.devices()[0].reserved, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_queue() {
        let budget = Arc::new(KvBudget::new([("cpu".to_string(), 10)]));
        let held = budget.reserve(need(10)).await;
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve(need(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(budget.waiting(), 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(budget.waiting(), 0);
        drop(held);
        let again = budget.reserve(need(10)).await;
        drop(again);
    }
}
