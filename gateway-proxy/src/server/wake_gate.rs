//! A future polled only when it has been woken itself.
//!
//! A connection's task waits on three things at once: the connection, the drain signal and
//! the idle watchdog. `select!` polls every branch each time the task wakes, and the task
//! wakes a few times per request for the connection alone; polling a watch receiver and a
//! timer that have nothing to say cost about 670 instructions per request
//! (`gantry-bench --instructions-only`, docs/benchmarks.md). Behind a gate, a branch is polled
//! on its first poll and then only after its own waker fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

pin_project_lite::pin_project! {
    /// `inner`, polled only when its waker fired since its last poll (and on the first poll).
    pub struct WakeGate<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        waker: Waker,
    }
}

/// Set by the inner future's waker; the task's waker is passed on.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> WakeGate<F> {
    pub fn new(inner: F) -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(flag.clone());
        Self { inner, flag, waker }
    }
}

impl<F: Future> Future for WakeGate<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake in between finds the task's waker.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; ready on the third.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
    }

    impl Future for Counted<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.polls.fetch_add(1, Ordering::Relaxed) == 2 {
                return Poll::Ready(());
            }
            // Wakes itself, as a future with more to do does.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_each_time() {
        let polls = AtomicUsize::new(0);
        let mut gate = std::pin::pin!(WakeGate::new(Counted { polls: &polls }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gate.as_mut().poll(&mut cx).is_pending());
        assert!(gate.as_mut().poll(&mut cx).is_pending());
        assert!(gate.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_gated_future_that_does_not_wake_is_not_polled_again() {
        struct NeverWakes<'a>(&'a AtomicUsize);
        impl Future for NeverWakes<'_> {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                self.0.fetch_add(1, Ordering::Relaxed);
                Poll::Pending
            }
        }
        let polls = AtomicUsize::new(0);
        let mut gate = std::pin::pin!(WakeGate::new(NeverWakes(&polls)));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(gate.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_gated_timer_still_fires() {
        // The timer wakes the gate's waker, which passes the wake to the task. The gated sleep
        // runs in a task of its own, so nothing else wakes that task: were the wake lost, the
        // task would never finish and the outer timeout would end the wait.
        let task = tokio::spawn(WakeGate::new(tokio::time::sleep(Duration::from_millis(10))));
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the gated sleep's task finishes before the outer timeout")
            .expect("the task does not panic");
    }
}
