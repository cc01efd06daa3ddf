//! A worker's KV caches, one per active request, within a bound.
//!
//! Requests that share a worker must not wipe each other's caches, or every
//! switch between them would recompute a whole prompt. The worker keeps one
//! model instance (weights shared, cache private) per request, up to a bound
//! set by a memory budget. Past it, the least recently used instance is
//! handed to the new request: its cache is synchronized like any other (the
//! shared prefix kept, the rest recomputed), so eviction costs time, never
//! correctness. With a memory budget (`memory.rs`) the bound is not needed:
//! admission already keeps every admitted request's caches within it.

use crate::worker::Role;

struct Slot {
    request: Option<u64>,
    role: Role,
    used: u64,
}

/// Model instances of one worker, keyed by request.
pub(crate) struct Slots {
    slots: Vec<Slot>,
    max: usize,
    clock: u64,
    evictions: u64,
}

impl Slots {
    /// Starts with `role` as the only instance; grows to `max` by forking.
    pub(crate) fn new(role: Role, max: usize) -> Self {
        Self {
            slots: vec![Slot {
                request: None,
                role,
                used: 0,
            }],
            max: max.max(1),
            clock: 0,
            evictions: 0,
        }
    }

    /// The instance that holds `request`'s cache, making one if needed.
    pub(crate) fn get(&mut self, request: u64) -> &mut Role {
        self.clock += 1;
        let index = match self.slots.iter().position(|s| s.request == Some(request)) {
            Some(index) => index,
            None => self.assign(request),
        };
        let slot = &mut self.slots[index];
        slot.used = self.clock;
        &mut slot.role
    }

    /// Frees `request`'s instance and its cache's memory, keeping one empty
    /// instance for the next request.
    pub(crate) fn release(&mut self, request: u64) {
        let Some(index) = self.slots.iter().position(|s| s.request == Some(request)) else {
            return;
        };
        if self.slots.len() > 1 {
            self.slots.swap_remove(index);
        } else {
            self.slots[index].request = None;
            self.slots[index].role.cache_mut().reset();
        }
    }

    /// Bytes the caches of every instance hold now.
    pub(crate) fn bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.role.cache().cache_bytes())
            .sum()
    }

    /// Instances held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Times a request's cache was handed to another request.
    #[cfg(test)]
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    fn assign(&mut self, request: u64) -> usize {
        if let Some(index) = self.slots.iter().position(|s| s.request.is_none()) {
            self.slots[index].request = Some(request);
            return index;
        }
        if self.slots.len() < self.max
            && let Some(role) = self.slots[0].role.fork()
        {
            self.slots.push(Slot {
                request: Some(request),
                role,
                used: 0,
            });
            return self.slots.len() - 1;
        }
        let lru = (0..self.slots.len())
            .min_by_key(|&i| self.slots[i].used)
            .unwrap_or(0);
        self.evictions += 1;
        self.slots[lru].request = Some(request);
        lru
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::Drafter;
    use dsi_core::cancel::CancelFlag;
    use dsi_core::model::ForwardError;
    use dsi_core::sampling::Decoding;
    use dsi_core::schedule::Drafted;

    /// A drafter that drafts nothing and can fork when `forks` says so.
    struct Idle {
        forks: bool,
    }

    impl crate::roles::CacheState for Idle {}

    impl Drafter for Idle {
        fn draft(
            &mut self,
            _: &[u32],
            _: usize,
            _: &Decoding,
            _: &CancelFlag,
        ) -> Result<Vec<Drafted>, ForwardError> {
            Ok(Vec::new())
        }

        fn fork(&self) -> Option<Box<dyn Drafter>> {
            self.forks
                .then(|| Box::new(Idle { forks: true }) as Box<dyn Drafter>)
        }
    }

    #[test]
    fn one_instance_per_request_then_least_recently_used() {
        let mut slots = Slots::new(Role::Drafter(Box::new(Idle { forks: true })), 2);
        slots.get(1);
        slots.get(2);
        assert_eq!(slots.slots.len(), 2);
        slots.get(1);
        slots.get(2);
        assert_eq!(slots.evictions(), 0);
        // Request 1 is the least recently used: request 3 takes its cache.
        slots.get(3);
        assert_eq!(slots.evictions(), 1);
        assert_eq!(slots.slots.len(), 2);
        assert!(slots.slots.iter().all(|s| s.request != Some(1)));
        slots.get(2);
        assert_eq!(slots.evictions(), 1);
        // Ended requests free their instances, down to one.
        slots.release(2);
        assert_eq!(slots.len(), 1);
        slots.release(3);
        assert_eq!(slots.len(), 1);
        slots.get(4);
        assert_eq!(slots.evictions(), 1, "the kept instance is free");
    }

    #[test]
    fn a_model_that_cannot_fork_shares_its_one_cache() {
        let mut slots = Slots::new(Role::Drafter(Box::new(Idle { forks: false })), 8);
        slots.get(1);
        slots.get(2);
        assert_eq!(slots.slots.len(), 1);
        assert_eq!(slots.evictions(), 1);
    }
}
