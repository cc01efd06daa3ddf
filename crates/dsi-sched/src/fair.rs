//! Round-robin across requests: a worker shared by several requests takes
//! one task from each in turn, so one long request cannot starve the others.
//! Within a request tasks keep their order, which the scheduler relies on (a
//! cancelled job ends before its request's next task begins).

use std::collections::{BTreeMap, VecDeque};

/// Tasks waiting on one worker, queued per request.
#[derive(Debug)]
pub(crate) struct FairQueue<T> {
    queues: BTreeMap<u64, VecDeque<T>>,
    last: Option<u64>,
    /// `last` before the latest pop, so that pop can be undone.
    before_pop: Option<u64>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            queues: BTreeMap::new(),
            last: None,
            before_pop: None,
        }
    }
}

impl<T> FairQueue<T> {
    /// Queues `task` behind `request`'s earlier tasks.
    pub(crate) fn push(&mut self, request: u64, task: T) {
        self.queues.entry(request).or_default().push_back(task);
    }

    /// Puts `task` back at the head of `request`'s queue; the next pop
    /// still moves on to the next request first.
    pub(crate) fn push_front(&mut self, request: u64, task: T) {
        self.queues.entry(request).or_default().push_front(task);
    }

    /// Undoes the latest pop, which returned `task` of `request`: it is
    /// again the head of its queue and the next pop returns it first.
    pub(crate) fn put_back(&mut self, request: u64, task: T) {
        self.push_front(request, task);
        self.last = self.before_pop;
    }

    /// True when no task waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The oldest task of the request after the last one served (by id,
    /// wrapping around).
    pub(crate) fn pop(&mut self) -> Option<T> {
        let next = match self.last {
            Some(last) => self
                .queues
                .range(last + 1..)
                .next()
                .or_else(|| self.queues.iter().next()),
            None => self.queues.iter().next(),
        }
        .map(|(&request, _)| request)?;
        self.before_pop = self.last;
        self.last = Some(next);
        let queue = self.queues.get_mut(&next)?;
        let task = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&next);
        }
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_requests_in_turn_and_keeps_each_in_order() {
        let mut queue = FairQueue::default();
        for i in 0..4 {
            queue.push(1, (1, i));
        }
        queue.push(2, (2, 0));
        queue.push(3, (3, 0));
        queue.push(2, (2, 1));
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(
            order,
            [(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (1, 2), (1, 3)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_new_request_waits_one_turn_at_most() {
        let mut queue = FairQueue::default();
        for i in 0..10 {
            queue.push(5, i);
        }
        assert_eq!(queue.pop(), Some(0));
        queue.push(1, 100);
        assert_eq!(queue.pop(), Some(100));
        assert_eq!(queue.pop(), Some(1));
    }

    #[test]
    fn a_task_put_back_is_next() {
        let mut queue = FairQueue::default();
        queue.push(1, 10);
        queue.push(2, 20);
        queue.push(3, 30);
        assert_eq!(queue.pop(), Some(10));
        assert_eq!(queue.pop(), Some(20));
        queue.put_back(2, 20);
        assert_eq!(queue.pop(), Some(20));
        assert_eq!(queue.pop(), Some(30));
    }
}
