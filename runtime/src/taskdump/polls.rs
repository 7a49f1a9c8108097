//! Since when each thread that polls tasks is in a poll, from tokio's poll hooks: a worker in one
//! poll for long is blocked, and a multi-threaded runtime's dump stops every other worker to wait
//! for it (up to 250 ms a try, and with a blocked worker perhaps longer), so none is asked for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::registry::entry::clock_us;

/// A poll this long is a blocked worker: no dump is asked for while one lasts.
pub(super) const BLOCKED: Duration = Duration::from_millis(100);

/// Each polling thread's start of its current poll, in microseconds on the registry's coarse clock
/// (a scheduler tick's resolution, plenty against 100 ms) plus one; 0 while it is not in one. Threads are listed on their first poll and never removed: a few per
/// runtime.
static THREADS: Mutex<Vec<Arc<AtomicU64>>> = Mutex::new(Vec::new());

thread_local! {
    static IN_POLL: Arc<AtomicU64> = {
        let since = Arc::new(AtomicU64::new(0));
        THREADS.lock().unwrap_or_else(PoisonError::into_inner).push(since.clone());
        since
    };
}

fn now() -> u64 {
    clock_us().saturating_add(1)
}

fn mark(since: u64) {
    // A thread being torn down has no slot left; it polls nothing more either.
    let _ = IN_POLL.try_with(|slot| slot.store(since, Ordering::Relaxed));
}

pub(super) fn watch(builder: &mut tokio::runtime::Builder) {
    builder.on_before_task_poll(|_| mark(now()));
    builder.on_after_task_poll(|_| mark(0));
    // A poll that panicked may not have run the hook after it: a parked thread polls nothing.
    builder.on_thread_park(|| mark(0));
}

/// How long the longest poll under way has lasted, if one is.
pub(super) fn longest_poll() -> Option<Duration> {
    let now = now();
    let threads = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    threads
        .iter()
        .map(|slot| slot.load(Ordering::Relaxed))
        .filter(|&since| since != 0)
        .map(|since| Duration::from_micros(now.saturating_sub(since)))
        .max()
}
