//! Deadline arithmetic: a moment `d` after another that never overflows, and a wait for a count
//! to reach zero that gives up at a deadline.

use std::pin::pin;
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
        tokio::select! {
            _ = notified => {}
            _ = sleep_until(deadline) => {}
        }
    }
}
