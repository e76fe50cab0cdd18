//! One signal per connection for whatever must interrupt its serving: an
//! eviction (admission.rs), a stream head that left hyper (the fan-out's
//! handover) and shutdown. A connection's task is woken for every read and
//! write of every request; polling three futures (two `Notify`s and a
//! cancellation token, each behind a lock) on each of those wakes cost the
//! vote path about 4 % of the app's CPU. Here a wake costs one waker
//! registration and one atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// The connection was asked to give its slot up.
pub const EVICTED: u8 = 1;
/// A stream's head is out: the socket goes to the fan-out.
pub const FLUSHED: u8 = 2;
/// The server is shutting down.
pub const SHUTDOWN: u8 = 4;

/// What was raised for one connection (flags stay raised), and the waker of
/// the task watching it.
#[derive(Default)]
pub struct Attention {
    raised: AtomicU8,
    waker: AtomicWaker,
}

/// How a watch ended.
pub enum Watched<T> {
    /// The watched future finished.
    Ended(T),
    /// One of the watched flags is raised (all raised flags).
    Raised(u8),
}

impl Attention {
    /// Raises `flag` and wakes the watching task.
    pub fn raise(&self, flag: u8) {
        self.raised.fetch_or(flag, Ordering::AcqRel);
        self.waker.wake();
    }

    pub fn is_raised(&self, flag: u8) -> bool {
        self.raised.load(Ordering::Acquire) & flag != 0
    }

    /// Polls `fut` until it finishes or one of `flags` is raised.
    pub fn watch<'a, F: Future + Unpin>(&'a self, fut: &'a mut F, flags: u8) -> Watch<'a, F> {
        Watch {
            attention: self,
            fut,
            flags,
        }
    }
}

/// `Attention::watch`'s future (a named type: an `async fn` borrowing
/// hyper's connection trips the compiler's `Send` proof for the task).
pub struct Watch<'a, F> {
    attention: &'a Attention,
    fut: &'a mut F,
    flags: u8,
}

impl<F> Drop for Watch<'_, F> {
    fn drop(&mut self) {
        // A registered waker keeps its task's memory allocated, and the
        // admission registry keeps a connection's attention (in its slot)
        // for a while after the connection ended: let go of it now.
        drop(self.attention.waker.take());
    }
}

impl<F: Future + Unpin> Future for Watch<'_, F> {
    type Output = Watched<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Registered before the flags are read: a raise after the read
        // finds this waker.
        self.attention.waker.register(cx.waker());
        let raised = self.attention.raised.load(Ordering::Acquire);
        if raised & self.flags != 0 {
            return Poll::Ready(Watched::Raised(raised));
        }
        Pin::new(&mut *self.fut).poll(cx).map(Watched::Ended)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_raise_ends_the_watch_of_a_future_that_never_finishes() {
        let attention = Arc::new(Attention::default());
        let raiser = attention.clone();
        let mut never = std::future::pending::<()>();
        let watching = tokio::spawn(async move {
            match attention.watch(&mut never, FLUSHED | SHUTDOWN).await {
                Watched::Raised(flags) => flags,
                Watched::Ended(()) => 0,
            }
        });
        tokio::task::yield_now().await;
        raiser.raise(EVICTED);
        tokio::task::yield_now().await;
        assert!(!watching.is_finished(), "an unwatched flag lets it run on");
        raiser.raise(SHUTDOWN);
        assert_eq!(watching.await.ok(), Some(EVICTED | SHUTDOWN));
    }

    #[test]
    fn a_watch_lets_go_of_its_waker_when_it_ends() {
        struct Task;
        impl futures_util::task::ArcWake for Task {
            fn wake_by_ref(_: &Arc<Self>) {}
        }
        let task = Arc::new(Task);
        let waker = futures_util::task::waker(task.clone());
        let mut cx = Context::from_waker(&waker);
        let attention = Attention::default();
        let mut never = std::future::pending::<()>();
        let mut watch = attention.watch(&mut never, EVICTED);
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        assert_eq!(Arc::strong_count(&task), 3, "registered while watching");
        drop(watch);
        assert_eq!(Arc::strong_count(&task), 2, "released with the watch");
    }

    #[tokio::test]
    async fn a_finished_future_ends_the_watch() {
        let attention = Attention::default();
        let mut ready = std::future::ready(7);
        match attention.watch(&mut ready, EVICTED).await {
            Watched::Ended(n) => assert_eq!(n, 7),
            Watched::Raised(flags) => panic!("nothing was raised: {flags}"),
        }
    }
}
