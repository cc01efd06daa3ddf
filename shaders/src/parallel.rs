//! Sharing a kernel's tasks between the calling thread and rayon's pool.
//!
//! A decode step calls the kernels a few hundred times, each for a fraction
//! of a millisecond. Handing a call to rayon from a thread outside its pool
//! (every model worker is one) parks the caller until the pool's threads
//! have woken, worked and woken it again, on every call. Here the caller
//! starts on the tasks at once and helpers from the pool take tasks as they
//! wake; a helper that wakes late finds nothing left. Which thread runs a
//! task never changes its result.

use rayon::Scope;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Calls `f(i, &mut items[i])` for every item, on the calling thread and up
/// to `threads - 1` helpers from rayon's pool, each item once.
pub fn for_each<T: Send>(items: &mut [T], threads: usize, f: impl Fn(usize, &mut T) + Sync) {
    let helpers = threads.min(items.len()).saturating_sub(1);
    if helpers == 0 {
        for (i, item) in items.iter_mut().enumerate() {
            f(i, item);
        }
        return;
    }
    let slots: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let drain = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            // Each slot is taken once, so the lock is never contended; a
            // panic elsewhere leaves nothing half-written here.
            let mut item = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(i, &mut item);
        }
    };
    rayon::in_place_scope(|scope: &Scope<'_>| {
        for _ in 0..helpers {
            scope.spawn(|_| drain());
        }
        drain();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_at_every_thread_count() {
        for threads in [0, 1, 2, 5] {
            for n in [0, 1, 3, 64] {
                let mut items = vec![0u32; n];
                for_each(&mut items, threads, |i, item| *item += i as u32 + 1);
                let want: Vec<u32> = (1..=n as u32).collect();
                assert_eq!(items, want, "{n} items on {threads} threads");
            }
        }
    }
}
