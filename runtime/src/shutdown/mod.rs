//! The shutdown: what starts it ([`trigger`]), the functions that ask about it (here), the hooks
//! ([`hooks`]) and the sequence that `run` drives to the end ([`sequence`]): drain delay,
//! announce, cancel, drain, hooks, abort, join the blocking pool.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::context;
use crate::reason::Reason;
use crate::scope::tree;

pub(crate) mod hooks;
pub(crate) mod sequence;
pub(crate) mod state;
pub(crate) mod trigger;

/// Requests a shutdown, as a signal would. Idempotent: only the first
/// trigger starts the sequence.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     graceful::shutdown();
///     graceful::shutdown();
///     assert!(graceful::is_shutting_down());
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn shutdown() {
    context::expect("graceful::shutdown").start_shutdown(Reason::Requested);
}

/// Requests a shutdown and sets the exit status to `code`.
///
/// A panic or a signal still take precedence. A later call sets a new code.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// let exit = graceful::Builder::new().signals([]).run(async {
///     graceful::shutdown_with_code(7);
/// });
/// assert_eq!(exit.code(), 7);
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn shutdown_with_code(code: u8) {
    context::expect("graceful::shutdown_with_code").request_with_code(code);
}

/// Returns whether the program's shutdown has started, drain delay included: the readiness-probe
/// question.
///
/// True from the trigger on, wherever it is called from, a scope included. "Is it my turn to stop?"
/// is the other question, [`shutdown_requested()`]; the crate docs' table ["Which question to
/// ask"](https://docs.rs/graceful-main/latest/graceful/#which-question-to-ask) compares them.
///
/// Outside a graceful runtime: `false`.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// assert!(!graceful::is_shutting_down());
/// graceful::Builder::new().signals([]).run(async {
///     let jobs = graceful::scope("jobs");
///     assert!(!graceful::is_shutting_down());
///     graceful::shutdown();
///     assert!(graceful::is_shutting_down());
///     // In a scope whose turn has not come yet, too.
///     let inside = jobs.spawn(async { graceful::is_shutting_down() });
///     assert!(inside.await.unwrap());
/// });
/// ```
pub fn is_shutting_down() -> bool {
    context::with(|shared| shared.is_some_and(|s| s.shutdown().trigger.started().is_some()))
}

/// Why the shutdown started, once it has. Outside a graceful runtime: `None`.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use graceful::Reason;
///
/// graceful::Builder::new().signals([]).run(async {
///     graceful::spawn_service("watcher", async {
///         graceful::shutdown_requested().await;
///         assert_eq!(graceful::reason(), Some(Reason::MainReturned));
///     });
/// });
/// ```
pub fn reason() -> Option<Reason> {
    context::with(|shared| {
        shared?
            .shutdown()
            .trigger
            .started()
            .map(|s| s.reason.clone())
    })
}

/// When the grace runs out, once the shutdown has started. Outside a graceful runtime: `None`.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::time::Duration;
///
/// graceful::Builder::new()
///     .signals([])
///     .grace(Duration::from_secs(5))
///     .run(async {
///         assert!(graceful::deadline().is_none());
///         graceful::shutdown();
///         let left = graceful::deadline().unwrap() - tokio::time::Instant::now();
///         assert!(left <= Duration::from_secs(5));
///     });
/// ```
pub fn deadline() -> Option<tokio::time::Instant> {
    context::with(|shared| {
        let started = shared?.shutdown().trigger.started()?;
        Some(tokio::time::Instant::from_std(started.deadline))
    })
}

/// Returns a `CancellationToken` cancelled when it is the caller's turn to stop, for libraries that
/// take one.
///
/// It is a child of the current scope's token (the runtime's root token outside any scope),
/// cancelled at its announce step: at the root, when the shutdown starts (after the drain delay).
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let token = graceful::token();
///     graceful::shutdown();
///     token.cancelled().await;
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn token() -> CancellationToken {
    context::with_expect("graceful::token", |shared| {
        tree::current().map_or_else(
            || shared.shutdown().root.token.child_token(),
            |s| s.token.child_token(),
        )
    })
}

/// Returns a future that resolves when it is the caller's turn to stop.
///
/// At the root that is the announce step, after the drain delay; inside a
/// [`Scope`](crate::Scope), that scope's turn.
///
/// `Send + 'static`, so it fits `axum::serve(..).with_graceful_shutdown(..)` as it is.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let stopped = graceful::spawn_service("loop", async {
///         loop {
///             tokio::select! {
///                 _ = graceful::shutdown_requested() => break,
///                 _ = tokio::task::yield_now() => {}
///             }
///         }
///     });
///     graceful::shutdown();
///     stopped.await.unwrap();
/// });
/// ```
///
/// # Cancel safety
///
/// Cancel-safe: dropping it loses nothing, and a new one resolves at once after the start.
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn shutdown_requested() -> ShutdownRequested {
    context::with_expect("graceful::shutdown_requested", |shared| {
        let token = tree::current()
            .map_or_else(|| shared.shutdown().root.token.clone(), |s| s.token.clone());
        ShutdownRequested::from_token(token)
    })
}

impl ShutdownRequested {
    pub(crate) fn from_token(token: CancellationToken) -> ShutdownRequested {
        ShutdownRequested {
            inner: token.cancelled_owned(),
        }
    }
}

pin_project! {
    /// The future [`shutdown_requested()`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let requested: graceful::ShutdownRequested = graceful::shutdown_requested();
    ///     graceful::shutdown();
    ///     requested.await;
    /// });
    /// ```
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct ShutdownRequested {
        #[pin]
        inner: WaitForCancellationFutureOwned,
    }
}

impl Future for ShutdownRequested {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

/// Registers a future that runs after the drain, last registered first, to close what services
/// used.
///
/// Hooks run one at a time, once the work they could be closing things under has stopped.
///
/// Inside a [`Scope`](crate::Scope), the hook is the scope's: it runs once the scope's subtree has
/// finished in its turn, or when the scope is freed before its turn (every handle dropped, all its
/// work ended). A hook that panics is reported and the next one runs; a hook still running at the
/// deadline is aborted and the ones after it do not run.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::sync::{Arc, Mutex};
///
/// let order = Arc::new(Mutex::new(Vec::new()));
/// let log = order.clone();
/// graceful::Builder::new().signals([]).run(async move {
///     for name in ["A", "B", "C"] {
///         let log = log.clone();
///         graceful::on_shutdown(async move { log.lock().unwrap().push(name) });
///     }
/// });
/// assert_eq!(*order.lock().unwrap(), ["C", "B", "A"]);
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
#[track_caller]
pub fn on_shutdown<F>(hook: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let location = Location::caller();
    context::with_expect("graceful::on_shutdown", |shared| {
        let scope = tree::current().unwrap_or_else(|| shared.shutdown().root.clone());
        scope.add_hook(location, Box::pin(hook));
    });
}
