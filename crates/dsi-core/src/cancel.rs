//! A cancellation flag shared by whoever schedules a job and whoever runs it.
//!
//! Cancellation is cooperative: the runner checks the flag at its own safe
//! points (between layers, between draft steps) and stops there, leaving its
//! state as it was before the interrupted step. A runner in another process
//! learns of it through [`CancelFlag::cancelled`], a future that wakes when
//! the flag is raised, so whoever forwards jobs need not poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// A cloneable flag; every clone sees [`CancelFlag::cancel`].
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    raised: AtomicBool,
    /// Tasks waiting in [`CancelFlag::cancelled`].
    waiting: Mutex<Vec<Waker>>,
}

impl CancelFlag {
    /// A flag that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag and wakes whoever awaits it; idempotent.
    pub fn cancel(&self) {
        self.0.raised.store(true, Ordering::Release);
        let waiting = std::mem::take(&mut *self.waiting());
        for waker in waiting {
            waker.wake();
        }
    }

    /// True once any clone called [`CancelFlag::cancel`].
    pub fn is_cancelled(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }

    /// Resolves once the flag is raised (at once if it is).
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled { flag: self }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A waker list is valid whatever a panicking holder left in it.
        self.0
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The future of [`CancelFlag::cancelled`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled<'a> {
    flag: &'a CancelFlag,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.is_cancelled() {
            return Poll::Ready(());
        }
        let mut waiting = self.flag.waiting();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        drop(waiting);
        // Raised between the first check and the registration: the wake
        // may have missed this waker.
        if self.flag.is_cancelled() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    #[test]
    fn clones_share_the_flag() {
        let a = CancelFlag::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
    }

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiting_for_the_flag_wakes_once_it_is_raised() {
        let flag = CancelFlag::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut waiting = flag.cancelled();
        assert_eq!(Pin::new(&mut waiting).poll(&mut cx), Poll::Pending);
        assert_eq!(Pin::new(&mut waiting).poll(&mut cx), Poll::Pending);
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        flag.clone().cancel();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "woken once, not per poll"
        );
        assert_eq!(Pin::new(&mut waiting).poll(&mut cx), Poll::Ready(()));
        assert_eq!(
            Pin::new(&mut flag.cancelled()).poll(&mut cx),
            Poll::Ready(())
        );
    }
}
