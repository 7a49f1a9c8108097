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

use crate::context;
use crate::runtime::Runtime;
use crate::scope::tree::{self, ScopeInner};
use crate::task::TaskKind;
use crate::tracked;

/// What a service may return: a value that says whether the service failed.
///
/// A service is a loop that ends or fails, and a failure must be seen: a service whose output is
/// a failure — `Err(e)`, or a failing `ExitCode` — is reported with its name, spawn location and
/// the error's `Debug` text on one line, and with `stop_on_error` it starts the shutdown and makes
/// the exit status 1. The [`JoinHandle`] still yields the value. A service that returns anything
/// else wraps it in `Ok`. A service that never returns (an endless `loop`, a body that ends in
/// `panic!` or `std::process::exit`) has the output type `!`, which is one too: it needs no
/// annotation.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     // Reported on stderr: `graceful: service "loader" at src/main.rs:4:5 failed: "no such table"`.
///     let loader = graceful::spawn_service("loader", async { Err::<u32, _>("no such table") });
///     assert_eq!(loader.await.unwrap(), Err("no such table"));
///     // Any other value: wrap it in `Ok`.
///     let counter = graceful::spawn_service("counter", async { Ok::<_, std::convert::Infallible>(3) });
///     assert_eq!(counter.await.unwrap(), Ok(3));
/// });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a service's output",
    label = "this service returns `{Self}`",
    note = "a service returns (), Result<T, E: Debug>, ExitCode or never; wrap other values in Ok"
)]
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
        self.as_ref().err().map(|e| one_line(e))
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

/// Names a function pointer's return type, so that `!` can be named on stable Rust. Private: it
/// is only a way to write the type in the impl below, which users see as an impl for `!`.
trait Ret {
    type Output;
}

impl<R> Ret for fn() -> R {
    type Output = R;
}

/// The never type `!`, the output of a service body that never returns: an endless `loop`, or a
/// body that ends in `panic!`, `todo!()` or `std::process::exit`. Without this impl such a body
/// would need an annotation, and on edition 2024 would not compile at all (its type no longer
/// falls back to `()`).
#[allow(private_interfaces)]
impl ServiceOutput for <fn() -> ! as Ret>::Output {
    fn failure(&self) -> Option<String> {
        *self
    }
}

/// An error's `Debug` text on one line (its line breaks folded to ` — `), cut before a
/// `Stack backtrace:` section: formatting stops there, and the report is not filled with a
/// backtrace. (`anyhow` resolves its backtrace before it writes any of it, so the cut cannot
/// spare that cost; an error type that writes its backtrace lazily is spared it.)
fn one_line(error: &dyn fmt::Debug) -> String {
    const BACKTRACE: &str = "Stack backtrace:";

    struct UntilBacktrace {
        text: String,
        /// The backtrace began: a `Debug` that goes on after the error must add nothing.
        cut: bool,
    }

    impl fmt::Write for UntilBacktrace {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if self.cut {
                return Err(fmt::Error);
            }
            let from = self.text.len().saturating_sub(BACKTRACE.len());
            self.text.push_str(s);
            let from = (from..=self.text.len())
                .find(|&i| self.text.is_char_boundary(i))
                .unwrap_or(self.text.len());
            match self.text[from..].find(BACKTRACE) {
                Some(at) => {
                    self.text.truncate(from + at);
                    self.cut = true;
                    Err(fmt::Error)
                }
                None => Ok(()),
            }
        }
    }

    let mut text = UntilBacktrace {
        text: String::new(),
        cut: false,
    };
    // An `Err` here is the cut, or the error's own `Debug` failing: keep what was written.
    let _ = fmt::write(&mut text, format_args!("{error:?}"));
    let lines: Vec<&str> = text
        .text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join(" — ")
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

/// Spawns a future that the shutdown cancels at its next `.await`.
///
/// It is dropped as soon as its scope's cancel step comes, and its `Drop`s run.
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
/// # use graceful_runtime as graceful;
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
    context::with_expect("graceful::spawn", |shared| match tree::current() {
        None => tracked::spawn(shared, TaskKind::Cancellable, location, future),
        Some(scope) => tracked::spawn_in(shared, &scope, TaskKind::Cancellable, location, future),
    })
}

/// Spawns a named service that the shutdown drains: asked to stop, then aborted only at the
/// deadline.
///
/// It keeps running, is expected to notice [`shutdown_requested()`](crate::shutdown_requested) and
/// return, and is aborted only if it is still running at the deadline.
///
/// `name` appears in [`tasks()`](crate::tasks) and in the report. Its output says whether it
/// failed ([`ServiceOutput`]): a failure is reported, and with `stop_on_error` starts the shutdown.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
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
        service_in(shared, tree::current().as_ref(), name, location, future)
    })
}

/// A service in `scope` (the root for `None`).
pub(crate) fn service_in<F>(
    shared: &Runtime,
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

/// Runs `future` as protected work: the shutdown waits for it and never cancels it.
///
/// It runs to its end even if the task awaiting it is cancelled. The name is aiorun's (the crate
/// docs' ["Coming from
/// aiorun"](https://docs.rs/graceful-main/latest/graceful/#coming-from-aiorun)).
///
/// The future starts at once on the runtime, as its own tracked task, whether or not the returned
/// [`ShutdownWaitsFor`] is awaited. The shutdown waits for it up to the deadline.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
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
/// Outside a graceful runtime. Awaiting the returned future resumes the panic of a future that
/// panicked, and panics if the protected work was aborted (by [`Scope::abort`](crate::Scope::abort)
/// or at a deadline): see [`ShutdownWaitsFor`].
#[track_caller]
pub fn shutdown_waits_for<F>(future: F) -> ShutdownWaitsFor<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let location = Location::caller();
    context::with_expect("graceful::shutdown_waits_for", |shared| {
        protect(shared, tree::current(), location, future)
    })
}

/// Starts `future` as protected work in `scope` (`None` for the root).
pub(crate) fn protect<F>(
    shared: &Runtime,
    scope: Option<Arc<ScopeInner>>,
    location: &'static Location<'static>,
    future: F,
) -> ShutdownWaitsFor<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = match &scope {
        None => tracked::spawn(shared, TaskKind::Protected, location, future),
        Some(scope) => tracked::spawn_in(shared, scope, TaskKind::Protected, location, future),
    };
    ShutdownWaitsFor {
        handle: Some(handle),
        location,
        scope,
    }
}

/// The future [`shutdown_waits_for`] returns: the protected work's output.
///
/// If the protected work was aborted — its scope's [`abort`](crate::Scope::abort), or a deadline
/// that it outlived — there is no output to give: awaiting it panics with `graceful: protected
/// work at FILE:LINE:COL was aborted (WHY)`, which is reported as the awaiter's panic, so the
/// awaiter never waits for ever. A `main` that panics this way ends the program with the status of
/// whatever else applies, or 1, not 101: the panic only passes the abort on.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let saved: graceful::ShutdownWaitsFor<u32> = graceful::shutdown_waits_for(async { 7 });
///     assert_eq!(saved.await, 7);
/// });
/// ```
///
/// # Panics
///
/// When the protected work panicked (its panic is resumed) or was aborted, and when polled again
/// after it has resolved.
#[must_use = "the work runs anyway; await this to get its output"]
pub struct ShutdownWaitsFor<T> {
    /// `None` once it has resolved.
    handle: Option<JoinHandle<T>>,
    location: &'static Location<'static>,
    /// Its scope, `None` for the root's.
    scope: Option<Arc<ScopeInner>>,
}

/// The start of the panic message of an awaiter of aborted protected work: a `main` that panics
/// with it is not a panic for the exit status.
const ABORTED: &str = "graceful: protected work at ";

/// Whether a panic's payload is that of an awaiter of aborted protected work.
pub(crate) fn is_protected_aborted(payload: &(dyn std::any::Any + Send)) -> bool {
    payload
        .downcast_ref::<String>()
        .is_some_and(|message| message.starts_with(ABORTED) && message.contains(" was aborted ("))
}

impl<T> ShutdownWaitsFor<T> {
    /// Why the work was aborted, as far as the runtime's state tells: the program's deadline, its
    /// scope's own deadline, or an abort.
    fn why(&self) -> String {
        let now = std::time::Instant::now();
        let runtime = match &self.scope {
            Some(scope) => scope.runtime(),
            None => context::with(|shared| shared.cloned()),
        };
        let program_deadline =
            runtime.and_then(|shared| shared.shutdown().trigger.started().map(|s| s.deadline));
        if program_deadline.is_some_and(|deadline| deadline <= now) {
            return "the shutdown's deadline passed".into();
        }
        let Some(scope) = &self.scope else {
            return "the program's work was aborted".into();
        };
        let path = &scope.path;
        match scope.deadline.get() {
            Some(deadline) if *deadline <= now => {
                format!("scope `{path}` reached its deadline")
            }
            _ => format!("scope `{path}` was aborted"),
        }
    }
}

impl<T> Future for ShutdownWaitsFor<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(handle) = self.handle.as_mut() else {
            panic!("ShutdownWaitsFor polled after completion");
        };
        let result = ready!(Pin::new(handle).poll(cx));
        self.handle = None;
        match result {
            Ok(value) => Poll::Ready(value),
            Err(err) if err.is_panic() => resume_unwind(err.into_panic()),
            Err(_) => panic!("{ABORTED}{} was aborted ({})", self.location, self.why()),
        }
    }
}

impl<T> fmt::Debug for ShutdownWaitsFor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownWaitsFor")
            .field("location", &self.location)
            .field("scope", &self.scope.as_ref().map(|s| &*s.path))
            .field("resolved", &self.handle.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use std::fmt;

    /// Writes its text in the pieces given, as a `Debug` impl made of several `write!`s does.
    struct Pieces(&'static [&'static str]);

    impl fmt::Debug for Pieces {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.iter().try_for_each(|piece| f.write_str(piece))
        }
    }

    #[test]
    fn an_error_is_folded_onto_one_line() {
        let error = Pieces(&["loading\n\nCaused by:\n", "    no such table\n"]);
        assert_eq!(one_line(&error), "loading — Caused by: — no such table");
    }

    #[test]
    fn formatting_stops_before_the_backtrace_even_across_pieces() {
        struct Unresolved;
        impl fmt::Debug for Unresolved {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                panic!("the backtrace was formatted");
            }
        }
        struct WithBacktrace;
        impl fmt::Debug for WithBacktrace {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("failed\n\nStack back")?;
                f.write_str("trace:\n")?;
                write!(f, "{:?}", Unresolved)
            }
        }
        assert_eq!(one_line(&WithBacktrace), "failed");
        // A `Debug` that ignores the error and goes on adds nothing after the cut.
        struct Stubborn;
        impl fmt::Debug for Stubborn {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let _ = f.write_str("failed\nStack backtrace:\n");
                f.write_str("  0: main")
            }
        }
        assert_eq!(one_line(&Stubborn), "failed");
        assert_eq!(one_line(&"quoted"), "\"quoted\"");
    }
}
