//! `StopFlag`, how a blocking job learns that its turn to stop has come: a flag it polls or
//! sleeps on, raised by its scope's announce.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Raised when a blocking job's turn to stop comes; the job polls it or waits on it.
///
/// Cheap to clone (an `Arc`), `Send + Sync`. Poll it with [`is_raised`](Self::is_raised) between
/// units of work, or sleep on it with [`wait_timeout`](Self::wait_timeout) instead of
/// `std::thread::sleep`, so the job wakes the moment the shutdown starts.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::time::Duration;
///
/// graceful::Builder::new().signals([]).run(async {
///     let job = graceful::spawn_blocking("poller", |stop| {
///         let mut rounds = 0;
///         // Sleep "until stop or 10 ms", then do a round of work.
///         while !stop.wait_timeout(Duration::from_millis(10)) {
///             rounds += 1;
///         }
///         rounds
///     });
///     graceful::shutdown();
///     job.await.unwrap();
/// });
/// ```
#[derive(Clone)]
pub struct StopFlag {
    inner: Arc<Inner>,
}

struct Inner {
    raised: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl StopFlag {
    pub(crate) fn new() -> StopFlag {
        StopFlag {
            inner: Arc::new(Inner {
                raised: AtomicBool::new(false),
                lock: Mutex::new(()),
                cond: Condvar::new(),
            }),
        }
    }

    /// Returns whether the flag is raised, that is, whether the job should stop.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let job = graceful::spawn_blocking("units", |stop| {
    ///         let mut units = 0u64;
    ///         while !stop.is_raised() {
    ///             units += 1; // one unit of work
    ///             std::thread::yield_now();
    ///         }
    ///         units
    ///     });
    ///     graceful::shutdown();
    ///     assert!(job.await.is_ok());
    /// });
    /// ```
    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::SeqCst)
    }

    /// Blocks the thread until the flag is raised or `timeout` passes; returns
    /// [`is_raised`](Self::is_raised).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// graceful::Builder::new().signals([]).run(async {
    ///     let (waited, has_waited) = tokio::sync::oneshot::channel();
    ///     let job = graceful::spawn_blocking("poll", move |stop| {
    ///         let early = stop.wait_timeout(Duration::from_millis(1)); // nothing raised it yet
    ///         waited.send(()).unwrap();
    ///         let late = stop.wait_timeout(Duration::from_secs(10)); // the shutdown below does
    ///         (early, late)
    ///     });
    ///     has_waited.await.unwrap();
    ///     graceful::shutdown();
    ///     assert_eq!(job.await.unwrap(), (false, true));
    /// });
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let end = Instant::now().checked_add(timeout);
        let mut guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !self.is_raised() {
            let left = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            guard = match self.inner.cond.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        self.is_raised()
    }

    /// Blocks the thread until the flag is raised.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let job = graceful::spawn_blocking("waiter", |stop| {
    ///         stop.wait();
    ///         stop.is_raised()
    ///     });
    ///     graceful::shutdown();
    ///     assert!(job.await.unwrap());
    /// });
    /// ```
    pub fn wait(&self) {
        while !self.wait_timeout(Duration::from_secs(3600)) {}
    }

    pub(crate) fn raise(&self) {
        // Taking the lock orders the store before any waiter's check-then-wait.
        let _guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.raised.store(true, Ordering::SeqCst);
        self.inner.cond.notify_all();
    }
}

impl fmt::Debug for StopFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopFlag")
            .field("raised", &self.is_raised())
            .finish()
    }
}
