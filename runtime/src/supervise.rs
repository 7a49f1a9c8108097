//! Supervised services: a factory makes each incarnation, a policy says when to make another,
//! with exponential backoff and full jitter, up to an intensity limit (OTP's: at most `n`
//! restarts within a window). The supervisor, not `stop_on_panic`/`stop_on_error`, handles its
//! incarnations' failures; only giving up escalates.

use std::any::Any;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::context;
use crate::deadline::{race, First};
use crate::registry::Label;
use crate::runtime::Runtime;
use crate::scope::tree::{self, ScopeInner};
use crate::spawn::ServiceOutput;
use crate::task::{TaskInfo, TaskKind};

/// Restart policy for [`supervise`](crate::supervise): when to restart, how long to wait, when to
/// give up.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::time::Duration;
///
/// let exit = graceful::Builder::new().signals([]).run(async {
///     let policy = graceful::Restart::on_failure()
///         .backoff(Duration::from_millis(1), Duration::from_millis(10))
///         .limit(2, Duration::from_secs(60));
///     let flaky = graceful::supervise("flaky", policy, || async { Err::<(), _>("down") });
///     flaky.stopped().await;
///     assert_eq!(flaky.restarts(), 2); // three runs, then it gave up
/// });
/// assert_eq!(exit.code(), 1, "a supervisor that gives up stops the program");
/// ```
#[derive(Clone, Debug)]
pub struct Restart {
    when: When,
    min: Duration,
    max: Duration,
    limit: u32,
    window: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    OnFailure,
    Always,
    Never,
}

impl Restart {
    fn new(when: When) -> Restart {
        Restart {
            when,
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            limit: 5,
            window: Duration::from_secs(60),
        }
    }

    /// Restarts after a failure (a panic, an `Err`, a failing `ExitCode`), not after a normal
    /// return.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let done = graceful::supervise("batch", graceful::Restart::on_failure(), || async {
    ///         Ok::<(), std::io::Error>(())
    ///     });
    ///     done.stopped().await;
    ///     assert_eq!(done.restarts(), 0, "a normal return is not restarted");
    /// });
    /// ```
    pub fn on_failure() -> Restart {
        Restart::new(When::OnFailure)
    }

    /// Restarts after a failure and after a normal return.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// graceful::Builder::new().signals([]).run(async {
    ///     let policy = graceful::Restart::always().backoff(Duration::ZERO, Duration::ZERO);
    ///     let ticker = graceful::supervise("ticker", policy, || async {});
    ///     while ticker.restarts() < 3 {
    ///         tokio::task::yield_now().await; // each normal return is restarted
    ///     }
    /// });
    /// ```
    pub fn always() -> Restart {
        Restart::new(When::Always)
    }

    /// Never restarts: the one run is an ordinary service, reported like any other.
    ///
    /// Its failure is handled as any service's is: reported, and `stop_on_panic` and
    /// `stop_on_error` apply.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let once = graceful::supervise("once", graceful::Restart::never(), || async {
    ///         Err::<(), _>("down")
    ///     });
    ///     once.stopped().await;
    ///     assert_eq!(once.restarts(), 0);
    /// });
    /// ```
    pub fn never() -> Restart {
        Restart::new(When::Never)
    }

    /// Sets the wait before each restart: exponential from `min` to `max`, with jitter (default 100
    /// ms to 30 s).
    ///
    /// `min` is the wait before the first restart; the jitter is full above `min`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// let started = std::time::Instant::now();
    /// graceful::Builder::new().signals([]).run(async {
    ///     let policy = graceful::Restart::on_failure()
    ///         .backoff(Duration::from_millis(100), Duration::from_secs(1))
    ///         .limit(1, Duration::from_secs(60));
    ///     let flaky = graceful::supervise("flaky", policy, || async { Err::<(), _>("down") });
    ///     flaky.stopped().await;
    /// });
    /// assert!(started.elapsed() >= Duration::from_millis(100), "it waited before the restart");
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Restart {
        self.min = min;
        self.max = max.max(min);
        self
    }

    /// Allows at most `restarts` restarts within `window`, then gives up (default 5 within 60 s).
    ///
    /// The failure that would need one more restart gives up: with `limit(2, ..)`, three
    /// incarnations run, then the supervisor gives up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// graceful::Builder::new().signals([]).run(async {
    ///     let policy = graceful::Restart::on_failure()
    ///         .backoff(Duration::ZERO, Duration::ZERO)
    ///         .limit(3, Duration::from_secs(10));
    ///     let flaky = graceful::supervise("flaky", policy, || async { Err::<(), _>("down") });
    ///     flaky.stopped().await;
    ///     assert_eq!(flaky.restarts(), 3);
    /// });
    /// ```
    pub fn limit(mut self, restarts: u32, window: Duration) -> Restart {
        self.limit = restarts;
        self.window = window;
        self
    }

    /// The wait before restart number `restart` (1 for the first).
    fn delay(&self, restart: u32, random: u64) -> Duration {
        let doublings = restart.saturating_sub(1).min(32);
        let cap = self
            .min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        let spread = cap.saturating_sub(self.min).as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            random % (spread + 1)
        };
        self.min + Duration::from_nanos(jitter)
    }
}

/// Handle to a supervised service: its restart count, and a future for when supervision ends.
///
/// Supervision ends when the supervisor gives up or is shut down with its scope.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// graceful::Builder::new().signals([]).run(async {
///     let calls = Arc::new(AtomicU32::new(0));
///     let counter = calls.clone();
///     let policy = graceful::Restart::on_failure().backoff(Duration::from_millis(1), Duration::from_millis(5));
///     let supervisor = graceful::supervise("flaky", policy, move || {
///         let n = counter.fetch_add(1, Ordering::SeqCst);
///         // Fails twice, then works.
///         async move { if n < 2 { Err("not yet") } else { Ok(()) } }
///     });
///     supervisor.stopped().await;
///     assert_eq!(supervisor.restarts(), 2);
/// });
/// ```
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    name: Cow<'static, str>,
    restarts: AtomicU32,
    stopped: CancellationToken,
}

impl Supervisor {
    /// How many times the service has been restarted.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let supervisor = graceful::supervise("once", graceful::Restart::on_failure(), || async {});
    ///     supervisor.stopped().await;
    ///     assert_eq!(supervisor.restarts(), 0);
    /// });
    /// ```
    pub fn restarts(&self) -> u32 {
        self.inner.restarts.load(Ordering::SeqCst)
    }

    /// The supervised service's name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let supervisor = graceful::supervise("consumer", graceful::Restart::never(), || async {});
    ///     assert_eq!(supervisor.name(), "consumer");
    /// });
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Returns a future that resolves once the supervisor has stopped for good.
    ///
    /// That is when its service ended for good (a normal return under `on_failure`), it gave up, or
    /// its scope's turn came.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let supervisor = graceful::supervise("job", graceful::Restart::on_failure(), || async {});
    ///     supervisor.stopped().await;
    /// });
    /// ```
    pub fn stopped(&self) -> SupervisorStopped {
        let token = self.inner.stopped.clone();
        SupervisorStopped {
            future: Box::pin(async move { token.cancelled().await }),
        }
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.inner.name)
            .field("restarts", &self.restarts())
            .field("stopped", &self.inner.stopped.is_cancelled())
            .finish()
    }
}

/// The future [`Supervisor::stopped`] returns.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let supervisor = graceful::supervise("job", graceful::Restart::never(), || async {});
///     let stopped: graceful::SupervisorStopped = supervisor.stopped();
///     stopped.await;
/// });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct SupervisorStopped {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Future for SupervisorStopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.future.as_mut().poll(cx)
    }
}

impl fmt::Debug for SupervisorStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorStopped").finish_non_exhaustive()
    }
}

/// Runs a service in the current scope and restarts it as `policy` says, each run made by
/// `factory`.
///
/// Each incarnation runs as a service named `name`.
///
/// Each failure and restart is reported (`graceful: service "consumer" failed ("no broker");
/// restart 3 of 5 in 60s, in 400ms`). The supervisor handles its service's failures:
/// `stop_on_panic` and `stop_on_error` do not react to them. When it gives up (the intensity
/// limit is reached), the nearest isolated scope is shut down, or else the program, with
/// [`Reason::Failed`](crate::Reason::Failed) and status 1. From the start of its scope's turn in a shutdown nothing
/// restarts: the running incarnation is drained like any service. [`tasks()`](crate::tasks)
/// shows the incarnation with its restart count.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// graceful::Builder::new().signals([]).run(async {
///     let attempts = Arc::new(AtomicU32::new(0));
///     let counter = attempts.clone();
///     let policy = graceful::Restart::on_failure().backoff(Duration::from_millis(1), Duration::from_millis(10));
///     let consumer = graceful::supervise("consumer", policy, move || {
///         let attempt = counter.fetch_add(1, Ordering::SeqCst);
///         async move {
///             if attempt == 0 {
///                 return Err("the broker is not up yet");
///             }
///             graceful::shutdown_requested().await;
///             Ok(())
///         }
///     });
///     while consumer.restarts() == 0 {
///         tokio::task::yield_now().await;
///     }
///     graceful::shutdown();
///     consumer.stopped().await;
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
#[track_caller]
pub fn supervise<F, Fut>(
    name: impl Into<Cow<'static, str>>,
    policy: Restart,
    factory: F,
) -> Supervisor
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: ServiceOutput,
{
    let location = Location::caller();
    let (shared, scope) = context::with_expect("graceful::supervise", |shared| {
        let scope = tree::current().unwrap_or_else(|| shared.shutdown().root.clone());
        (shared.clone(), scope)
    });
    start(&shared, &scope, name.into(), policy, location, factory)
}

pub(crate) fn start<F, Fut>(
    shared: &Arc<Runtime>,
    scope: &Arc<ScopeInner>,
    name: Cow<'static, str>,
    policy: Restart,
    location: &'static Location<'static>,
    mut factory: F,
) -> Supervisor
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: ServiceOutput,
{
    let supervisor = Supervisor {
        inner: Arc::new(Inner {
            name: name.clone(),
            restarts: AtomicU32::new(0),
            stopped: CancellationToken::new(),
        }),
    };
    if policy.when == When::Never {
        // An ordinary service: its failure is any service's failure.
        let handle = crate::spawn::service_in(shared, Some(scope), name, location, factory());
        let stopped = supervisor.inner.stopped.clone();
        shared.tokio().spawn(async move {
            let _ = handle.await;
            stopped.cancel();
        });
        return supervisor;
    }
    let (runtime, scope, handle) = (shared.clone(), scope.clone(), supervisor.clone());
    shared.tokio().spawn(async move {
        run(&runtime, &scope, &handle, &policy, location, &mut factory).await;
        handle.inner.stopped.cancel();
    });
    supervisor
}

/// How one incarnation ended.
enum Ended {
    Returned,
    Failed(String),
    /// Aborted: at the deadline, or with its scope.
    Cancelled,
}

async fn run<F, Fut>(
    shared: &Arc<Runtime>,
    scope: &Arc<ScopeInner>,
    supervisor: &Supervisor,
    policy: &Restart,
    location: &'static Location<'static>,
    factory: &mut F,
) where
    F: FnMut() -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: ServiceOutput,
{
    let name = &supervisor.inner.name;
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        let label = Label {
            name: Some(name.clone()),
            restarts: supervisor.restarts(),
            supervised: true,
            ..Label::default()
        };
        let incarnation = factory();
        let handle = crate::tracked::spawn_labelled(
            shared,
            scope,
            TaskKind::Service,
            label,
            location,
            async move { incarnation.await.failure() },
        );
        let ended = match handle.await {
            Ok(None) => Ended::Returned,
            Ok(Some(error)) => Ended::Failed(error),
            Err(err) if err.is_panic() => Ended::Failed(panic_text(err.into_panic())),
            Err(_) => Ended::Cancelled,
        };
        let mut info = TaskInfo::service(name.clone(), location);
        info.scope = scope.group().cloned();
        // An isolated scope that this failure makes give up reports the failure too.
        let before = shared.reporter().log.mark();
        let error = match ended {
            Ended::Cancelled => return,
            Ended::Returned if policy.when == When::OnFailure => return,
            Ended::Returned => None,
            Ended::Failed(error) => {
                shared.reporter().log.failed(&info, &error);
                Some(error)
            }
        };
        // From the start of its scope's turn nothing restarts.
        if turn_begun(shared, scope) {
            if let Some(error) = &error {
                let outcome = format!("failed ({error})");
                crate::report::supervised(
                    &info,
                    &outcome,
                    "not restarted: its scope is shutting down",
                );
            }
            return;
        }
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > policy.window)
        {
            recent.pop_front();
        }
        let outcome = match &error {
            Some(error) => format!("failed ({error})"),
            None => "returned".to_string(),
        };
        if recent.len() as u32 >= policy.limit {
            let why = format!(
                "gave up after {} restarts in {}",
                policy.limit,
                graceful_options::format_duration(policy.window)
            );
            crate::report::supervised(&info, &outcome, &why);
            shared.supervisor_gave_up(&info, scope, before);
            return;
        }
        let restart = supervisor.restarts() + 1;
        let delay = policy.delay(restart, random());
        crate::report::supervised(
            &info,
            &outcome,
            &format!(
                "restart {restart} of {} in {}, in {}",
                policy.limit,
                graceful_options::format_duration(policy.window),
                crate::report::Age(delay)
            ),
        );
        recent.push_back(now);
        let announced = announce_of(shared, scope);
        // The announce first: with no backoff, a sleep of zero is ready at once too.
        if let First::A(()) = race(announced.cancelled(), tokio::time::sleep(delay)).await {
            return;
        }
        supervisor.inner.restarts.store(restart, Ordering::SeqCst);
    }
}

/// The scope's announce: the root's is the program's.
fn announce_of(shared: &Runtime, scope: &Arc<ScopeInner>) -> CancellationToken {
    if scope.is_root() {
        shared.shutdown().root.token.clone()
    } else {
        scope.token.clone()
    }
}

fn turn_begun(shared: &Runtime, scope: &Arc<ScopeInner>) -> bool {
    announce_of(shared, scope).is_cancelled()
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("panicked: {text}")
}

/// A pseudo-random number for the jitter: restarts need spreading, not secrecy.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        x = now | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_from_min_to_max_with_jitter_above_min() {
        let policy =
            Restart::on_failure().backoff(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(policy.delay(1, u64::MAX), Duration::from_millis(100));
        for random in [0, 7, u64::MAX / 3, u64::MAX] {
            let second = policy.delay(2, random);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
            let late = policy.delay(40, random);
            assert!(late >= Duration::from_millis(100) && late <= Duration::from_secs(1));
        }
        assert_eq!(policy.delay(40, 0), Duration::from_millis(100));
    }
}
