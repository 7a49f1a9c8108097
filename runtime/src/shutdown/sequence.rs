//! The sequence: `main` runs until a trigger, then each step in order, sharing one deadline.
//! The steps are numbered as the crate docs number them; each step's state lives here.

use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::{pin, Pin};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::deadline::{later, until_zero};
use crate::phase::PollingMain;
use crate::reason::Reason;
use crate::registry;
use crate::report::{self, Report};
use crate::runtime::Runtime;
use crate::scope::turn;
use crate::task::{TaskInfo, TaskKind};
use crate::tracked::Slot;

use crate::scope::turn::ASYNC_KINDS;

/// How `main` ended.
pub(crate) enum MainOutcome {
    /// Its value, reported as std reports it (`Error: ...` on stderr for an `Err`).
    Returned(ExitCode),
    Panicked,
    /// Panicked on awaiting protected work that was aborted: reported as its panic, but the
    /// status is what else applies, or 1.
    ProtectedAborted,
    /// Still running at the deadline: dropped.
    Aborted,
}

/// `main`'s future as the sequence takes it: its value already reported as std reports a
/// `Termination`. Boxed, so that the sequence is compiled once, here, and not again in every
/// program for its own `main`'s type.
pub(crate) type MainFuture<'a> = Pin<Box<dyn Future<Output = ExitCode> + 'a>>;

/// `main`'s future, polled by the sequence alongside every step (it is a service, drained).
struct Main<'a> {
    future: Option<MainFuture<'a>>,
    slot: Option<Slot>,
    outcome: Option<MainOutcome>,
    /// `notify_ready = "auto"`: start-up is over the first time `main` waits; taken then.
    ready_on_first_await: Option<Arc<Runtime>>,
}

impl Main<'_> {
    fn poll_main(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(());
        };
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let _main = PollingMain::enter();
            future.as_mut().poll(cx)
        }));
        let outcome = match polled {
            Ok(Poll::Pending) => {
                if let Some(shared) = self.ready_on_first_await.take() {
                    shared.ready();
                }
                return Poll::Pending;
            }
            Ok(Poll::Ready(code)) => MainOutcome::Returned(code),
            // It only passes on the abort of protected work it awaited: not a panic of its own.
            Err(payload) if crate::spawn::is_protected_aborted(&*payload) => {
                MainOutcome::ProtectedAborted
            }
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
pub(crate) async fn drive(
    shared: &Arc<Runtime>,
    future: MainFuture<'_>,
    location: &'static Location<'static>,
) -> Ended {
    let registry = shared.registry();
    let shutdown = shared.shutdown();
    let mut main = Main {
        future: Some(future),
        slot: Some(Slot::main(shared, location)),
        outcome: None,
        ready_on_first_await: shared.config().notify_ready_auto.then(|| shared.clone()),
    };

    // Running: until a trigger, or until `main` ends (which triggers, unless `run_forever`).
    while !main.run_until(shutdown.trigger.fired()).await {
        match &main.outcome {
            Some(MainOutcome::Returned(code)) if *code == ExitCode::SUCCESS => {
                if !shared.config().run_forever {
                    shared.start_shutdown(Reason::MainReturned);
                }
            }
            Some(MainOutcome::Returned(_)) => {
                shared.start_shutdown(Reason::MainFailed);
            }
            Some(MainOutcome::ProtectedAborted) => {
                // A panic that passes an abort on: the status is what else applies, or 1.
                shared.start_shutdown(Reason::Panic {
                    task: Cow::Borrowed("main"),
                });
            }
            _ => {
                shared.panic_stops(Cow::Borrowed("main"));
            }
        }
    }

    let started = shutdown.trigger.started().expect("the trigger fired");
    // On tokio's clock, which a `start_paused` test advances; the watchdog keeps to the real one.
    let deadline = tokio::time::Instant::from_std(started.deadline);
    let mut summary = report::summary::Summary::new(started);

    // Step 0: the drain delay. Readiness probes see `is_shutting_down()`; nothing is cancelled.
    if !shared.config().drain_delay.is_zero() {
        let end = tokio::time::Instant::from_std(later(started.at, shared.config().drain_delay));
        main.alongside(sleep_until(end.min(deadline))).await;
    }

    // Steps 1 to 4 are the root's turn, as every scope takes its turn: the scopes that depend on
    // it first (`scope.depends_on(&graceful::current_scope())`); then its own work is announced,
    // cancelled and drained; then its children take their turns; then its hooks run.
    let root = &shutdown.root;
    main.alongside(turn::program(root, shared, &mut summary))
        .await;

    // Step 5: whatever async work is left (hooks may have started some) gets until the deadline.
    // Where it waits is asked of a task dump early enough that the dump is taken by the deadline
    // (only in a build that can dump; else the lead is zero and this is one wait).
    let lead = shared.dump_lead();
    let early = deadline.checked_sub(lead).unwrap_or(deadline);
    let mut done = wait_for(&mut main, shared, &ASYNC_KINDS, early).await;
    let mut dump = None;
    if !done && !lead.is_zero() {
        dump = shared.dump_ahead(&ASYNC_KINDS, &registry::any);
        done = wait_for(&mut main, shared, &ASYNC_KINDS, deadline).await;
    }
    if !done {
        let dump = Runtime::dumped(dump).await;
        shutdown.root.phase.begin_abort();
        let busy = shared.reporter().servers.busy();
        let mut aborted = registry.abort_listing(&ASYNC_KINDS, &registry::any);
        Runtime::fill_chains(dump, &mut aborted).await;
        report::aborted(&busy, &aborted);
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
    let mut report = summary.finish(&shared.reporter().log);
    if matches!(
        outcome,
        MainOutcome::Panicked | MainOutcome::ProtectedAborted
    ) {
        report.panicked.insert(0, TaskInfo::main(location));
    }
    root.done.cancel();
    Ended {
        main: outcome,
        report,
    }
}

/// Waits, with `main` running alongside, until no work of `kinds` is live, in any scope; `false` at the deadline.
async fn wait_for(
    main: &mut Main<'_>,
    shared: &Runtime,
    kinds: &[TaskKind],
    deadline: tokio::time::Instant,
) -> bool {
    let registry = shared.registry();
    let zero = until_zero(registry.changed(), || registry.count_all(kinds), deadline);
    main.alongside(zero).await
}
