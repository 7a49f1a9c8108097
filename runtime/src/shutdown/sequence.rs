//! The sequence: `main` runs until a trigger, then each step in order, sharing one deadline.
//! The steps are numbered as the crate docs number them; each step's state lives here.

use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::{pin, Pin};
use std::process::{ExitCode, Termination};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::deadline::{later, until_zero};
use crate::phase::PollingMain;
use crate::reason::Reason;
use crate::registry;
use crate::report::{self, Report};
use crate::scope::turn::{self, Mode};
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
            Ok(Poll::Ready(value)) => MainOutcome::Returned(value.report()),
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

/// Tasks aborted before the aborting task yields: half a worker's local queue, so that the
/// cancellations it queues stay on that worker.
const ABORT_SLICE: usize = 128;

/// Aborts the next [`ABORT_SLICE`] of the root's own `spawn` tasks from `from` on: step 2's unit
/// of work. How many it aborted, and where the next slice starts, if anywhere.
fn cancel_slice(
    registry: &registry::Registry,
    from: registry::Position,
) -> (usize, Option<registry::Position>) {
    registry.abort_slice(
        &[TaskKind::Cancellable],
        &registry::ungrouped,
        from,
        ABORT_SLICE,
    )
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
    let shutdown = &shared.shutdown;
    let mut main = Main {
        future: Some(Box::pin(future)),
        slot: Some(Slot::main(shared, location)),
        outcome: None,
        ready_on_first_await: shared.config.notify_ready_auto.then(|| shared.clone()),
    };

    // Running: until a trigger, or until `main` ends (which triggers, unless `run_forever`).
    while !main.run_until(shutdown.trigger.fired()).await {
        match &main.outcome {
            Some(MainOutcome::Returned(code)) if *code == ExitCode::SUCCESS => {
                if !shared.config.run_forever {
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
    let mut summary = report::Summary::new(started);

    // Step 0: the drain delay. Readiness probes see `is_shutting_down()`; nothing is cancelled.
    if !shared.config.drain_delay.is_zero() {
        let end = tokio::time::Instant::from_std(later(started.at, shared.config.drain_delay));
        main.alongside(sleep_until(end.min(deadline))).await;
    }

    // Scopes that the root depends on (`scope.depends_on(&graceful::current_scope())`) finish
    // before the root's own work is told to stop.
    let root = &shutdown.root;
    let _ = root.deadline.set(started.deadline);
    root.claim();
    main.alongside(turn::wait_dependents(
        root,
        shared,
        started.deadline,
        Mode::Program,
    ))
    .await;

    // Step 1: announce.
    shutdown.announce();
    report::phase("announce", started.at, &[]);

    // Step 2: cancel every `spawn` task and wait until each has been dropped.
    let step = Instant::now();
    shutdown.root.phase.begin_cancel();
    // The first slice from this thread: with a few tasks that is all of them, and no trip to a
    // worker and back.
    let (first, rest) = cancel_slice(registry, registry::Position::START);
    summary.cancelled = first;
    if let Some(rest) = rest {
        // The rest on a worker, a slice at a time: an abort there queues the task on that
        // worker, which then runs the cancellations while their tasks are still in its cache.
        // From this thread every abort would take the runtime's shared queue's lock.
        let aborting = shared.clone();
        let cancelling = shared.tokio().spawn(async move {
            let (mut cancelled, mut from) = (0, Some(rest));
            while let Some(at) = from {
                let (count, next) = cancel_slice(&aborting.registry, at);
                cancelled += count;
                from = next;
                tokio::task::yield_now().await;
            }
            cancelled
        });
        summary.cancelled += main.alongside(cancelling).await.unwrap_or(0);
    }
    wait_for(
        &mut main,
        shared,
        &Counted::Root(&[TaskKind::Cancellable]),
        deadline,
    )
    .await;
    report::phase("cancel", step, &[("tasks", summary.cancelled)]);

    // Step 3: drain `main`, services and protected futures. Tasks they spawn meanwhile are
    // cancelled before their first poll; the hooks wait until those are dropped too.
    let step = Instant::now();
    let draining = registry.count(&[TaskKind::Service, TaskKind::Protected]);
    let drained = wait_for(
        &mut main,
        shared,
        &Counted::Root(&[
            TaskKind::Service,
            TaskKind::Protected,
            TaskKind::Cancellable,
        ]),
        deadline,
    )
    .await;
    report::phase("drain", step, &[("services", draining)]);

    // The scopes' turns: the root's children, concurrently, each then its own children. Scoped
    // work drains after the work that created it.
    let step = Instant::now();
    root.own_drained.cancel();
    let scopes = root.children().len();
    let scopes_in_time = main
        .alongside(turn::run_children(
            root,
            shared,
            started.deadline,
            Mode::Program,
        ))
        .await;
    if scopes > 0 {
        report::phase("scopes", step, &[("scopes", scopes)]);
    }

    // Step 4: hooks, last registered first, each within what is left of the grace.
    let step = Instant::now();
    while let Some(hook) = shutdown.root.hooks.pop() {
        if !drained || !scopes_in_time || tokio::time::Instant::now() >= deadline {
            report::hook_skipped(&TaskInfo::hook(hook.location));
            summary
                .report
                .hooks_not_run
                .push(TaskInfo::hook(hook.location));
            continue;
        }
        summary.hooks_run += 1;
        let mut handle = crate::tracked::spawn(shared, TaskKind::Hook, hook.location, hook.future);
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
    if !wait_for(&mut main, shared, &Counted::All(&ASYNC_KINDS), deadline).await {
        shutdown.root.phase.begin_abort();
        let aborted = registry.abort_listing(&ASYNC_KINDS, &registry::any);
        report::aborted(&aborted);
        summary.report.aborted = aborted;
        if main.future.take().is_some() {
            main.slot = None;
            main.outcome = Some(MainOutcome::Aborted);
        }
    }

    // Step 6: join tracked blocking jobs until the deadline; then abandon them, by name.
    let step = Instant::now();
    if !wait_for(
        &mut main,
        shared,
        &Counted::All(&[TaskKind::Blocking]),
        deadline,
    )
    .await
    {
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
    let mut report = summary.finish(&shared.report.log);
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

/// Which live work a wait counts.
enum Counted<'a> {
    /// The root's own work of these kinds.
    Root(&'a [TaskKind]),
    /// All work of these kinds, in scopes or not.
    All(&'a [TaskKind]),
}

impl Counted<'_> {
    fn count(&self, registry: &crate::registry::Registry) -> usize {
        match self {
            Counted::Root(kinds) => registry.count(kinds),
            Counted::All(kinds) => registry.count_all(kinds),
        }
    }
}

/// Waits, with `main` running alongside, until no counted work is live; `false` at the deadline.
async fn wait_for<F>(
    main: &mut Main<F>,
    shared: &Shared,
    kinds: &Counted<'_>,
    deadline: tokio::time::Instant,
) -> bool
where
    F: Future,
    F::Output: Termination,
{
    let registry = &shared.registry;
    let zero = until_zero(registry.changed(), || kinds.count(registry), deadline);
    main.alongside(zero).await
}
