//! The async kinds of tracked work: `spawn` (cancelled), `spawn_service` (drained) and
//! `shutdown_waits_for` (protected).

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::{resume_unwind, Location};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{ready, Context, Poll};

use tokio::task::JoinHandle;

use std::sync::Arc;

use crate::context::{self, Shared};
use crate::scope::{self, ScopeInner};
use crate::task::TaskKind;
use crate::tracked;

/// What a service may return: a value that says whether the service failed.
///
/// A service is a loop that ends or fails, and a failure must be seen: a service whose output is
/// a failure — `Err(e)`, or a failing `ExitCode` — is reported with its name, spawn location and
/// the error's `Debug` text, and with `stop_on_error` it starts the shutdown and makes the exit
/// status 1. The [`JoinHandle`] still yields the value. A service that returns anything else
/// wraps it in `Ok`.
///
/// # Examples
///
/// ```
/// graceful::Builder::new().signals([]).run(async {
///     // Reported on stderr: `graceful: service "loader" at src/main.rs:4:5 failed: "no such table"`.
///     let loader = graceful::spawn_service("loader", async { Err::<u32, _>("no such table") });
///     assert_eq!(loader.await.unwrap(), Err("no such table"));
///     // Any other value: wrap it in `Ok`.
///     let counter = graceful::spawn_service("counter", async { Ok::<_, std::convert::Infallible>(3) });
///     assert_eq!(counter.await.unwrap(), Ok(3));
/// });
/// ```
pub trait ServiceOutput: Send + 'static {
    /// The failure's text (the error's `Debug`), or `None` for success.
    fn failure(&self) -> Option<String>;
}

impl ServiceOutput for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T, E> ServiceOutput for Result<T, E>
where
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:?}"))
    }
}

impl ServiceOutput for ExitCode {
    fn failure(&self) -> Option<String> {
        (*self != ExitCode::SUCCESS).then(|| format!("{self:?}"))
    }
}

impl ServiceOutput for Infallible {
    fn failure(&self) -> Option<String> {
        match *self {}
    }
}

/// A service's output check: a failing output is reported, described by the service's
/// registry entry (and under `stop_on_error` starts the shutdown), before the value goes to the
/// `JoinHandle`.
enum ServiceCheck {}

impl<T: ServiceOutput> tracked::Check<T> for ServiceCheck {
    fn check<P: tracked::Place>(slot: &tracked::Slot<P>, output: &T) {
        if let Some(error) = output.failure() {
            slot.failed(&error);
        }
    }
}

/// Spawns a task that the shutdown **cancels**: it is dropped at its next `.await` as soon as the
/// shutdown starts, and its `Drop`s run.
///
/// The task runs on the graceful runtime like `tokio::spawn` and is tracked: it appears in
/// [`tasks()`](crate::tasks) with its spawn location, and the shutdown waits until it has been
/// dropped. A task spawned after the shutdown started is cancelled before its first poll. Its
/// handle then yields a cancelled [`JoinError`](tokio::task::JoinError).
///
/// Use it for work that can be lost: a request handler, a cache refresh. For work that must
/// finish, see [`spawn_service`] and [`shutdown_waits_for`].
///
/// Not for work that others depend on until they finish: `spawn` tasks are cancelled first,
/// before services drain, so a database connection's driver future (tokio-postgres'
/// `connection`) or a pool's reaper spawned here would stop under the services still using it,
/// and their in-flight work would fail. Spawn such a driver in a [`Scope`](crate::Scope)
/// (`graceful::scope("db").spawn(connection)`): a scope's work stops after the work that created
/// it.
///
/// Inside a scope, `spawn` spawns into that scope.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// struct SetOnDrop(Arc<AtomicBool>);
/// impl Drop for SetOnDrop {
///     fn drop(&mut self) {
///         self.0.store(true, Ordering::SeqCst);
///     }
/// }
///
/// let dropped = Arc::new(AtomicBool::new(false));
/// let guard = SetOnDrop(dropped.clone());
/// graceful::Builder::new().signals([]).run(async move {
///     let handle = graceful::spawn(async move {
///         // Moved in, so it is dropped with the task even if the task never ran.
///         let _guard = guard;
///         std::future::pending::<()>().await
///     });
///     graceful::shutdown();
///     assert!(handle.await.unwrap_err().is_cancelled());
/// });
/// assert!(dropped.load(Ordering::SeqCst));
/// ```
///
/// # Panics
///
/// Outside a graceful runtime (`#[graceful::main]` or [`Builder::run`](crate::Builder::run)).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let location = Location::caller();
    context::with_expect("graceful::spawn", |shared| match scope::current() {
        None => tracked::spawn(shared, TaskKind::Task, location, future),
        Some(scope) => tracked::spawn_in(shared, &scope, TaskKind::Task, location, future),
    })
}

/// Spawns a service that the shutdown **drains**: it keeps running, is expected to notice
/// [`shutdown_requested()`](crate::shutdown_requested) and return, and is aborted only if it is
/// still running at the deadline.
///
/// `name` appears in [`tasks()`](crate::tasks) and in the report. Its output says whether it
/// failed ([`ServiceOutput`]): a failure is reported, and with `stop_on_error` starts the shutdown.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let flushed = Arc::new(AtomicBool::new(false));
/// let flag = flushed.clone();
/// graceful::Builder::new().signals([]).run(async move {
///     graceful::spawn_service("flusher", async move {
///         graceful::shutdown_requested().await;
///         // Clean-up after the signal still runs: services are drained, not dropped.
///         tokio::task::yield_now().await;
///         flag.store(true, Ordering::SeqCst);
///     });
/// });
/// assert!(flushed.load(Ordering::SeqCst));
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
#[track_caller]
pub fn spawn_service<F>(name: impl Into<Cow<'static, str>>, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: ServiceOutput,
{
    let location = Location::caller();
    let name = name.into();
    context::with_expect("graceful::spawn_service", |shared| {
        service_in(shared, scope::current().as_ref(), name, location, future)
    })
}

/// A service in `scope` (the root for `None`).
pub(crate) fn service_in<F>(
    shared: &Shared,
    scope: Option<&Arc<ScopeInner>>,
    name: Cow<'static, str>,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: ServiceOutput,
{
    match scope {
        None => tracked::spawn_named::<ServiceCheck, F>(
            shared,
            TaskKind::Service,
            name,
            location,
            future,
        ),
        Some(scope) => tracked::spawn_named_in::<ServiceCheck, F>(
            shared,
            scope,
            TaskKind::Service,
            name,
            location,
            future,
        ),
    }
}

/// Runs `future` so that the shutdown **waits for it**: it is never cancelled by the shutdown, even
/// if the task awaiting it is (aiorun's `shutdown_waits_for`).
///
/// The future starts at once on the runtime, as its own tracked task, whether or not the returned
/// [`ShutdownWaitsFor`] is awaited. The shutdown waits for it up to the deadline.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let saved = Arc::new(AtomicBool::new(false));
/// let flag = saved.clone();
/// graceful::Builder::new().signals([]).run(async move {
///     let (started, has_started) = tokio::sync::oneshot::channel();
///     graceful::spawn(async move {
///         let save = graceful::shutdown_waits_for(async move {
///             graceful::shutdown_requested().await;
///             flag.store(true, Ordering::SeqCst);
///         });
///         started.send(()).unwrap();
///         // This task is cancelled by the shutdown; the save it started is not.
///         save.await;
///     });
///     has_started.await.unwrap();
///     graceful::shutdown();
/// });
/// assert!(saved.load(Ordering::SeqCst));
/// ```
///
/// # Cancel safety
///
/// Dropping the returned future does not cancel the work: that is its purpose.
///
/// # Panics
///
/// Outside a graceful runtime. Awaiting it resumes the panic of a future that panicked.
#[track_caller]
pub fn shutdown_waits_for<F>(future: F) -> ShutdownWaitsFor<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let location = Location::caller();
    let handle = context::with_expect(
        "graceful::shutdown_waits_for",
        |shared| match scope::current() {
            None => tracked::spawn(shared, TaskKind::Protected, location, future),
            Some(scope) => tracked::spawn_in(shared, &scope, TaskKind::Protected, location, future),
        },
    );
    ShutdownWaitsFor { handle }
}

impl<T> ShutdownWaitsFor<T> {
    pub(crate) fn from_handle(handle: JoinHandle<T>) -> ShutdownWaitsFor<T> {
        ShutdownWaitsFor { handle }
    }
}

/// The future [`shutdown_waits_for`] returns: the protected work's output.
///
/// # Examples
///
/// ```
/// graceful::Builder::new().signals([]).run(async {
///     let saved: graceful::ShutdownWaitsFor<u32> = graceful::shutdown_waits_for(async { 7 });
///     assert_eq!(saved.await, 7);
/// });
/// ```
#[must_use = "the work runs anyway; await this to get its output"]
#[derive(Debug)]
pub struct ShutdownWaitsFor<T> {
    handle: JoinHandle<T>,
}

impl<T> Future for ShutdownWaitsFor<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match ready!(Pin::new(&mut self.handle).poll(cx)) {
            Ok(value) => Poll::Ready(value),
            Err(err) if err.is_panic() => resume_unwind(err.into_panic()),
            // Aborted at the deadline, when every other piece of async work is aborted too: the
            // task awaiting this is about to be dropped, so there is no value to give it.
            Err(_) => Poll::Pending,
        }
    }
}
