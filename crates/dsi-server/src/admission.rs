//! Admission: at most `max_running` generations run at once and at most
//! `max_queue` more wait for a slot; past that a request is refused at once
//! (429 with `Retry-After`) instead of piling up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The generation slots and the queue before them.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    admitted: AtomicUsize,
    running: AtomicUsize,
    max_running: usize,
    max_queue: usize,
}

/// A request's place: in the queue until [`Ticket::run`] returns, then in a
/// slot until dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// `max_running` slots (at least 1) and `max_queue` waiting places.
    pub fn new(max_running: usize, max_queue: usize) -> Arc<Self> {
        let max_running = max_running.max(1);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_running)),
            admitted: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running,
            max_queue,
        })
    }

    /// A place in the queue, or `None` when the queue is full.
    pub fn enter(self: &Arc<Self>) -> Option<Ticket> {
        let limit = self.max_running + self.max_queue;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Ticket {
            admission: Arc::clone(self),
            permit: None,
        })
    }

    /// Generations running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.admitted
            .load(Ordering::Acquire)
            .saturating_sub(self.running())
    }

    /// Slots and queue places, for the dashboard.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_running, self.max_queue)
    }
}

impl Ticket {
    /// Waits for a generation slot.
    pub async fn run(&mut self) {
        if self.permit.is_some() {
            return;
        }
        // The semaphore is never closed, so acquiring cannot fail; a failure
        // would only let this request run without a slot (and uncounted).
        if let Ok(permit) = Arc::clone(&self.admission.slots).acquire_owned().await {
            self.permit = Some(permit);
            self.admission.running.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.admission.running.fetch_sub(1, Ordering::AcqRel);
        }
        self.admission.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_exactly_past_slots_plus_queue() {
        let admission = Admission::new(2, 3);
        let mut tickets: Vec<Ticket> = (0..5).map(|_| admission.enter().unwrap()).collect();
        assert!(admission.enter().is_none());
        tickets[0].run().await;
        tickets[1].run().await;
        assert_eq!((admission.running(), admission.queued()), (2, 3));
        drop(tickets.remove(0));
        assert_eq!((admission.running(), admission.queued()), (1, 3));
        let again = admission.enter();
        assert!(again.is_some());
        assert!(admission.enter().is_none());
    }
}
