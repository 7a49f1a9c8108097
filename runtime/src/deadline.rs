//! Deadline arithmetic: a moment `d` after another that never overflows, a wait for a count to
//! reach zero that gives up at a deadline, and a race of two futures.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::time::sleep_until;

/// `at + d`, or a moment so far ahead that no program will see it when that overflows: a grace of
/// `Duration::MAX` means "no practical deadline", never a panic.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    if let Some(t) = at.checked_add(d) {
        return t;
    }
    // Instants are bounded by the platform's clock type; halve until the sum fits.
    let mut step = d;
    while !step.is_zero() {
        step /= 2;
        if let Some(t) = at.checked_add(step) {
            return t;
        }
    }
    at
}

/// Waits until `count()` is zero, counting again each time `changed` is notified; `false` at the
/// deadline. The registry and the scopes notify when a count they keep reaches zero.
pub(crate) async fn until_zero(
    changed: &Notify,
    count: impl Fn() -> usize,
    deadline: tokio::time::Instant,
) -> bool {
    loop {
        // Registered before the count is read, so a zero-crossing in between is not missed.
        let mut notified = pin!(changed.notified());
        notified.as_mut().enable();
        if count() == 0 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        race(notified, sleep_until(deadline)).await;
    }
}

/// Which of two raced futures finished first, with its output.
pub(crate) enum First<A, B> {
    A(A),
    B(B),
}

/// Polls `a` then `b` until one is ready. The runtime's few two-way waits use this rather than
/// `tokio::select!`, so the runtime does not turn on tokio's `macros` feature: that feature puts
/// syn and tokio-macros before tokio on every user's critical path of a cold build.
pub(crate) async fn race<A: Future, B: Future>(a: A, b: B) -> First<A::Output, B::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(First::A(out));
        }
        b.as_mut().poll(cx).map(First::B)
    })
    .await
}
