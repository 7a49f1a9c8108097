//! The shutdown: what starts it (the trigger), the functions that ask about it, and the sequence
//! that `run` drives to the end: drain delay, announce, cancel, drain, hooks, abort,
//! join the blocking pool.

use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::{pin, Pin};
use std::process::{ExitCode, Termination};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tokio::time::sleep_until;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::context::{self, Shared};
use crate::registry::{Slot, TaskInfo, TaskKind};
use crate::report::{self, Report};
use crate::signals::Signal;

/// Why the shutdown started, as [`reason()`] tells it.
///
/// # Examples
///
/// ```
/// use graceful::Reason;
///
/// graceful::Builder::new().signals([]).run(async {
///     assert_eq!(graceful::reason(), None);
///     graceful::shutdown();
///     assert_eq!(graceful::reason(), Some(Reason::Requested));
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A captured signal, named as in the `signals` option (`"SIGTERM"`, `"CTRL_C"`).
    Signal(&'static str),
    /// [`shutdown()`] or [`shutdown_with_code()`].
    Requested,
    /// `main` returned successfully (and `run_forever` is off).
    MainReturned,
    /// `main` returned a failure (`Err`, or a failing `ExitCode`).
    MainFailed,
    /// `main` panicked, or a tracked task did under `stop_on_panic`.
    Panic {
        /// `"main"`, the task's name, or `task at file:line:col` for an unnamed one.
        task: Cow<'static, str>,
    },
    /// A service failed (returned `Err`, or a failing `ExitCode`) under `stop_on_error`.
    Failed {
        /// The service's name.
        task: Cow<'static, str>,
    },
}

pub(crate) struct Started {
    pub(crate) reason: Reason,
    pub(crate) at: Instant,
    pub(crate) deadline: Instant,
}

const NO_CODE: u16 = u16::MAX;

pub(crate) struct Trigger {
    started: OnceLock<Started>,
    /// The first captured signal and when it was delivered, whether it started the shutdown or
    /// joined one already running: it decides the exit status, and a repeat of it more than a
    /// second later forces the exit.
    pub(crate) first_signal: OnceLock<(Signal, Instant)>,
    /// Cancelled by the first trigger: wakes the sequence, from any thread (the signal thread).
    fired: CancellationToken,
    /// `shutdown_with_code`'s status, or `NO_CODE`.
    code: AtomicU16,
    /// A panic in `main`, or in a tracked task under `stop_on_panic`: the status becomes 101.
    pub(crate) panicked: AtomicBool,
    /// A service failed under `stop_on_error`: the status becomes 1.
    pub(crate) failed: AtomicBool,
}

impl Default for Trigger {
    fn default() -> Trigger {
        Trigger {
            started: OnceLock::new(),
            first_signal: OnceLock::new(),
            fired: CancellationToken::new(),
            code: AtomicU16::new(NO_CODE),
            panicked: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }
}

impl Trigger {
    pub(crate) fn started(&self) -> Option<&Started> {
        self.started.get()
    }

    /// The first captured signal, if one arrived.
    pub(crate) fn signal(&self) -> Option<Signal> {
        self.first_signal.get().map(|(signal, _)| *signal)
    }

    pub(crate) fn code(&self) -> Option<u8> {
        u8::try_from(self.code.load(Ordering::SeqCst)).ok()
    }
}

impl Shared {
    /// Starts the shutdown unless it has started; returns whether this call started it.
    pub(crate) fn start_shutdown(&self, reason: Reason) -> bool {
        let at = Instant::now();
        let deadline = later(at, self.config.grace);
        let started = Started {
            reason,
            at,
            deadline,
        };
        if self.trigger.started.set(started).is_err() {
            return false;
        }
        self.registry.common.watching.store(true, Ordering::SeqCst);
        self.watchdog.arm(at, deadline);
        self.notify_stopping();
        self.trigger.fired.cancel();
        true
    }

    /// Reports a panic of tracked work, and starts the shutdown under `stop_on_panic`.
    pub(crate) fn task_panicked(&self, info: &TaskInfo) {
        crate::report::panicked(info);
        self.log.panicked(info);
        // A panicking hook is reported and the next one runs: it never stops the
        // program.
        if self.config.stop_on_panic && info.kind != TaskKind::Hook {
            let task = if info.name.is_empty() {
                Cow::Owned(info.to_string())
            } else {
                info.name.clone()
            };
            self.panic_stops(task);
        }
    }

    /// Reports a failed service, and starts the shutdown under `stop_on_error`.
    pub(crate) fn service_failed(&self, info: &TaskInfo, error: &str) {
        crate::report::service_failed(info, error);
        self.log.failed(info, error);
        if self.config.stop_on_error {
            self.trigger.failed.store(true, Ordering::SeqCst);
            self.start_shutdown(Reason::Failed {
                task: info.name.clone(),
            });
        }
    }

    pub(crate) fn panic_stops(&self, task: Cow<'static, str>) {
        self.trigger.panicked.store(true, Ordering::SeqCst);
        self.start_shutdown(Reason::Panic { task });
    }

    pub(crate) fn time_left(&self) -> Duration {
        self.trigger.started().map_or(self.config.grace, |s| {
            s.deadline.saturating_duration_since(Instant::now())
        })
    }
}

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

/// Requests a shutdown, as a signal would (aiorun's `loop.stop()`). Idempotent: only the first
/// trigger starts the sequence.
///
/// # Examples
///
/// ```
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

/// Requests a shutdown and sets the exit status to `code` (a panic or a signal still take
/// precedence). A later call sets a new code.
///
/// # Examples
///
/// ```
/// let code = graceful::Builder::new().signals([]).run(async {
///     graceful::shutdown_with_code(7);
/// });
/// assert_eq!(code, std::process::ExitCode::from(7));
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn shutdown_with_code(code: u8) {
    context::expect("graceful::shutdown_with_code").request_with_code(code);
}

impl Shared {
    pub(crate) fn request_with_code(&self, code: u8) {
        self.trigger.code.store(u16::from(code), Ordering::SeqCst);
        self.start_shutdown(Reason::Requested);
    }
}

/// Whether the shutdown has started (true from the first moment, drain delay included).
///
/// Outside a graceful runtime: `false`.
///
/// # Examples
///
/// ```
/// assert!(!graceful::is_shutting_down());
/// graceful::Builder::new().signals([]).run(async {
///     assert!(!graceful::is_shutting_down());
///     graceful::shutdown();
///     assert!(graceful::is_shutting_down());
/// });
/// ```
pub fn is_shutting_down() -> bool {
    context::with(|shared| shared.is_some_and(|s| s.trigger.started().is_some()))
}

/// Why the shutdown started, once it has. Outside a graceful runtime: `None`.
///
/// # Examples
///
/// ```
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
    context::with(|shared| shared?.trigger.started().map(|s| s.reason.clone()))
}

/// When the grace runs out, once the shutdown has started. Outside a graceful runtime: `None`.
///
/// # Examples
///
/// ```
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
        let started = shared?.trigger.started()?;
        Some(tokio::time::Instant::from_std(started.deadline))
    })
}

/// A child of the runtime's root `CancellationToken`, cancelled when the shutdown starts (after
/// the drain delay), for libraries that take a token.
///
/// # Examples
///
/// ```
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
    context::expect("graceful::token").root.child_token()
}

/// A future that resolves once the shutdown has started (after the drain delay, at the announce
/// step).
///
/// `Send + 'static`, so it fits `axum::serve(..).with_graceful_shutdown(..)` as it is.
///
/// # Examples
///
/// ```
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
    let shared = context::expect("graceful::shutdown_requested");
    ShutdownRequested::from_token(shared.root.clone())
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

type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

struct Hook {
    future: HookFuture,
    location: &'static Location<'static>,
}

#[derive(Default)]
pub(crate) struct Hooks {
    stack: Mutex<Vec<Hook>>,
}

impl Hooks {
    fn pop(&self) -> Option<Hook> {
        self.stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }
}

/// Registers a hook: a future run after the drain (step 4), one hook at a time, last registered
/// first, so a hook can close what services used until they stopped.
///
/// A hook that panics is reported and the next one runs; a hook still running at the deadline is
/// aborted and the ones after it do not run.
///
/// # Examples
///
/// ```
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
    let shared = context::expect("graceful::on_shutdown");
    shared
        .hooks
        .stack
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Hook {
            future: Box::pin(hook),
            location,
        });
}

/// How `main` ended.
pub(crate) enum MainOutcome {
    /// Its value, reported as std reports it (`Error: ...` on stderr for an `Err`).
    Returned(ExitCode),
    Panicked,
    /// Still running at the deadline: dropped.
    Aborted,
}

/// `main`'s future, polled by the sequence alongside every step (it is a service, drained).
struct Main<F> {
    future: Option<Pin<Box<F>>>,
    slot: Option<Slot>,
    outcome: Option<MainOutcome>,
    /// `notify_ready = "auto"`: start-up is over the first time `main` waits; taken then.
    ready_on_first_await: Option<Arc<Shared>>,
}

impl<F> Main<F>
where
    F: Future,
    F::Output: Termination,
{
    fn poll_main(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(());
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => {
                if let Some(shared) = self.ready_on_first_await.take() {
                    shared.notify_ready();
                }
                return Poll::Pending;
            }
            Ok(Poll::Ready(value)) => MainOutcome::Returned(value.report()),
            Err(_) => MainOutcome::Panicked,
        };
        self.future = None;
        self.slot = None;
        self.outcome = Some(outcome);
        Poll::Ready(())
    }

    /// Runs `main` until the shutdown is triggered (`true`) or `main` ends (`false`).
    async fn run_until(&mut self, trigger: &CancellationToken) -> bool {
        let mut fired = pin!(trigger.cancelled());
        poll_fn(|cx| {
            if fired.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if self.future.is_some() && self.poll_main(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await
    }

    /// Waits for `until` while `main` keeps running.
    async fn alongside<R>(&mut self, until: impl Future<Output = R>) -> R {
        let mut until = pin!(until);
        poll_fn(|cx| {
            if let Poll::Ready(value) = until.as_mut().poll(cx) {
                return Poll::Ready(value);
            }
            let _ = self.poll_main(cx);
            Poll::Pending
        })
        .await
    }
}

/// How the sequence ended, for the exit status and the report.
pub(crate) struct Ended {
    pub(crate) main: MainOutcome,
    pub(crate) report: Report,
}

/// Runs `main` and then the shutdown sequence.
pub(crate) async fn drive<F>(
    shared: &Arc<Shared>,
    future: F,
    location: &'static Location<'static>,
) -> Ended
where
    F: Future,
    F::Output: Termination,
{
    let registry = &shared.registry;
    let mut main = Main {
        future: Some(Box::pin(future)),
        slot: Some(registry.insert_main(location)),
        outcome: None,
        ready_on_first_await: shared.config.notify_ready_auto.then(|| shared.clone()),
    };

    // Running: until a trigger, or until `main` ends (which triggers, unless `run_forever`).
    while !main.run_until(&shared.trigger.fired).await {
        match &main.outcome {
            Some(MainOutcome::Returned(code)) if *code == ExitCode::SUCCESS => {
                if !shared.config.run_forever {
                    shared.start_shutdown(Reason::MainReturned);
                }
            }
            Some(MainOutcome::Returned(_)) => {
                shared.start_shutdown(Reason::MainFailed);
            }
            _ => {
                shared.panic_stops(Cow::Borrowed("main"));
            }
        }
    }

    let started = shared.trigger.started().expect("the trigger fired");
    // On tokio's clock, which a `start_paused` test advances; the watchdog keeps to the real one.
    let deadline = tokio::time::Instant::from_std(started.deadline);
    let mut summary = report::Summary::new(started);

    // Step 0: the drain delay. Readiness probes see `is_shutting_down()`; nothing is cancelled.
    if !shared.config.drain_delay.is_zero() {
        let end = tokio::time::Instant::from_std(later(started.at, shared.config.drain_delay));
        main.alongside(sleep_until(end.min(deadline))).await;
    }

    // Step 1: announce.
    shared.root.cancel();
    shared.stop.raise();
    report::phase("announce", started.at, &[]);

    // Step 2: cancel every `spawn` task and wait until each has been dropped.
    let step = Instant::now();
    summary.cancelled = registry.cancel_tasks();
    wait_for(&mut main, shared, &[TaskKind::Task], deadline).await;
    report::phase("cancel", step, &[("tasks", summary.cancelled)]);

    // Step 3: drain `main`, services and protected futures. Tasks they spawn meanwhile are
    // cancelled before their first poll; the hooks wait until those are dropped too.
    let step = Instant::now();
    let draining = registry.count(&[TaskKind::Service, TaskKind::Protected]);
    let drained = wait_for(
        &mut main,
        shared,
        &[TaskKind::Service, TaskKind::Protected, TaskKind::Task],
        deadline,
    )
    .await;
    report::phase("drain", step, &[("services", draining)]);

    // Step 4: hooks, last registered first, each within what is left of the grace.
    let step = Instant::now();
    while let Some(hook) = shared.hooks.pop() {
        if !drained || tokio::time::Instant::now() >= deadline {
            report::hook_skipped(hook.location);
            summary
                .report
                .hooks_not_run
                .push(TaskInfo::hook(hook.location));
            continue;
        }
        summary.hooks_run += 1;
        let mut handle = shared.spawn_tracked(TaskKind::Hook, None, hook.location, hook.future);
        let joined = main
            .alongside(tokio::time::timeout_at(deadline, &mut handle))
            .await;
        match joined {
            Ok(Ok(())) => {}
            // The tracked wrapper has reported the panic; the next hook runs.
            Ok(Err(err)) if err.is_panic() => summary.hooks_panicked += 1,
            // Aborted with everything else at the deadline, below.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    report::phase("hooks", step, &[("hooks", summary.hooks_run)]);

    // Step 5: whatever async work is left (hooks may have started some) gets until the deadline.
    let async_kinds = [
        TaskKind::Task,
        TaskKind::Service,
        TaskKind::Protected,
        TaskKind::Hook,
    ];
    if !wait_for(&mut main, shared, &async_kinds, deadline).await {
        let aborted = registry.abort_all();
        report::aborted(&aborted);
        summary.report.aborted = aborted;
        if main.future.take().is_some() {
            main.slot = None;
            main.outcome = Some(MainOutcome::Aborted);
        }
    }

    // Step 6: join tracked blocking jobs until the deadline; then abandon them, by name.
    let step = Instant::now();
    if !wait_for(&mut main, shared, &[TaskKind::Blocking], deadline).await {
        let abandoned: Vec<TaskInfo> = registry
            .snapshot()
            .into_iter()
            .filter(|t| t.kind == TaskKind::Blocking)
            .collect();
        report::abandoned(&abandoned);
        summary.report.abandoned = abandoned;
    }
    let abandoned = summary.report.abandoned.len();
    report::phase("join", step, &[("abandoned", abandoned)]);

    let outcome = main.outcome.take().unwrap_or(MainOutcome::Aborted);
    let mut report = summary.finish(&shared.log);
    if matches!(outcome, MainOutcome::Panicked) {
        report.panicked.insert(0, TaskInfo::main(location));
    }
    Ended {
        main: outcome,
        report,
    }
}

/// Waits, with `main` running alongside, until no entry of `kinds` is live; `false` at the deadline.
async fn wait_for<F>(
    main: &mut Main<F>,
    shared: &Shared,
    kinds: &[TaskKind],
    deadline: tokio::time::Instant,
) -> bool
where
    F: Future,
    F::Output: Termination,
{
    let changed = &shared.registry.common.changed;
    loop {
        // Registered before the count is read, so a zero-crossing in between is not missed.
        let mut notified = pin!(changed.notified());
        notified.as_mut().enable();
        if shared.registry.count(kinds) == 0 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        main.alongside(async {
            tokio::select! {
                _ = notified => {}
                _ = sleep_until(deadline) => {}
            }
        })
        .await;
    }
}
