//! A scope's own shutdown, apart from the program's: `Scope::shutdown` runs its subtree's turns
//! with a deadline of its own and a report of its own, `Scope::abort` ends them at once, and
//! `ScopeShutdown`/`ScopeFinished` wait for a scope from outside it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::tree::ScopeInner;
use super::turn::{groups, picks, run, run_freed_hooks, Mode, ALL_KINDS, ASYNC_KINDS};
use crate::deadline::later;
use crate::report::{self, Report};
use crate::runtime::Runtime;
use crate::task::TaskKind;

/// `scope.shutdown()`.
pub(crate) fn shutdown(scope: &Arc<ScopeInner>) -> ScopeShutdown {
    begin(scope);
    ScopeShutdown::new(scope.clone())
}

/// Starts the partial shutdown of `scope` unless it (or the program's) has started.
pub(crate) fn begin(scope: &Arc<ScopeInner>) {
    begin_since(scope, None);
}

/// What a turn does, for the layers below this one that ask for it (a scope freed with hooks, an
/// isolated scope whose work failed): handed to each runtime's core when it is made.
pub(crate) fn turns() -> super::tree::Turns {
    super::tree::Turns {
        run_freed_hooks,
        begin: begin_since,
    }
}

/// The same, for a failure in the scope that starts it: its report covers the log from `since`,
/// taken before the failure was logged, so that it lists the failure.
pub(crate) fn begin_since(scope: &Arc<ScopeInner>, since: Option<report::LogMark>) {
    if let Some(shared) = scope.runtime() {
        if scope.is_root() {
            shared.start_shutdown(crate::Reason::Requested);
        } else if scope.claim() {
            let now = Instant::now();
            let grace = scope.own_grace().unwrap_or(shared.config().grace);
            let mut deadline = later(now, grace);
            if let Some(started) = shared.shutdown().trigger.started() {
                deadline = deadline.min(started.deadline);
            }
            let _ = scope.deadline.set(deadline);
            // What the report covers: the subtree as it is now (a scope freed during the
            // shutdown is still in it), and what is logged from now on.
            let since = since.unwrap_or_else(|| shared.reporter().log.mark());
            let groups = groups(scope);
            let (scope, runtime) = (scope.clone(), shared.clone());
            shared.tokio().spawn(async move {
                let in_time = run(&scope, &runtime, deadline, Mode::Partial, None).await;
                let report = end_of_partial(&scope, &runtime, now, in_time, groups, since).await;
                let _ = scope.report.set(report);
                scope.done.cancel();
            });
        }
    }
}

/// At a partial shutdown's end: abort what is left of the subtree and say how it went, from what
/// was logged `since` its start in the scopes of `groups` (its subtree at the start) and of its
/// subtree now.
async fn end_of_partial(
    scope: &Arc<ScopeInner>,
    shared: &Runtime,
    at: Instant,
    in_time: bool,
    mut groups: Vec<Arc<str>>,
    since: report::LogMark,
) -> Report {
    {
        let known: HashSet<*const u8> = groups.iter().map(|g| g.as_ptr()).collect();
        groups.extend(
            super::turn::groups(scope)
                .into_iter()
                .filter(|g| !known.contains(&g.as_ptr())),
        );
    }
    let which = |g: Option<&Arc<str>>| picks(&groups, g);
    let mut report = Report {
        reason: shared
            .shutdown()
            .trigger
            .started()
            .map(|s| s.reason.clone()),
        ..Report::default()
    };
    if !in_time {
        // Where the stuck work waits, from a dump taken before the abort ends it.
        let dump = Runtime::dumped(shared.dump_ahead(&ASYNC_KINDS, &which)).await;
        for inner in scope.subtree() {
            inner.phase.begin_abort();
        }
        let busy = shared.reporter().servers.busy();
        report.aborted = shared.registry().abort_listing(&ASYNC_KINDS, &which);
        Runtime::fill_chains(dump, &mut report.aborted).await;
        report::aborted(&busy, &report.aborted);
        report.abandoned = shared
            .registry()
            .snapshot_of(&which)
            .into_iter()
            .filter(|t| t.kind == TaskKind::Blocking)
            .collect();
        report::abandoned(&report.abandoned);
    }
    shared
        .reporter()
        .log
        .copy_into(&mut report, &|g| picks(&groups, g), since);
    report.elapsed = at.elapsed();
    report
}

/// `scope.abort()`.
pub(crate) fn abort(scope: &Arc<ScopeInner>) {
    let Some(shared) = scope.runtime() else {
        return;
    };
    let subtree = scope.subtree();
    for inner in &subtree {
        inner.claim();
        inner.phase.begin_abort();
        inner.token.cancel();
        inner.stop.raise();
    }
    let busy = shared.reporter().servers.busy();
    let aborted = if scope.is_root() {
        shared.start_shutdown(crate::Reason::Requested);
        shared
            .registry()
            .abort_listing(&ASYNC_KINDS, &crate::registry::any)
    } else {
        let groups = groups(scope);
        shared
            .registry()
            .abort_listing(&ASYNC_KINDS, &|g| picks(&groups, g))
    };
    if !aborted.is_empty() {
        report::scope_aborted(&busy, &scope.path, &aborted);
    }
    let _ = scope.report.set(Report {
        aborted,
        ..Report::default()
    });
    for inner in subtree {
        inner.own_drained.cancel();
        inner.done.cancel();
    }
}

/// Panics if the work polling this thread is inside `scope`'s subtree (or is its hook): awaiting
/// the scope's `what` there would wait for itself until the deadline.
fn refuse_self_wait(scope: &ScopeInner, what: &str) {
    let inside = match super::tree::current() {
        Some(current) => {
            let mut at = Some(&*current);
            let mut found = false;
            while let Some(here) = at {
                if std::ptr::eq(here, scope) {
                    found = true;
                    break;
                }
                at = here.parent().map(|p| &**p);
            }
            found
        }
        None => {
            scope.is_root()
                && crate::phase::is_polling_main()
                && crate::context::with(|shared| {
                    shared.is_some_and(|s| std::ptr::eq(Arc::as_ptr(&s.shutdown().root), scope))
                })
        }
    };
    if inside {
        let name = if scope.is_root() {
            "the root scope".to_string()
        } else {
            format!("scope `{}`", scope.path)
        };
        panic!(
            "graceful: awaiting {name}'s {what}() from inside it would wait for itself until the \
             deadline; to stop the program call graceful::shutdown(), await the scope's {what}() \
             from outside it, or call shutdown() without awaiting it"
        );
    }
}

/// The future [`Scope::shutdown`](super::Scope::shutdown) returns: the subtree's [`Report`].
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let jobs = graceful::scope("jobs");
///     let stopping: graceful::ScopeShutdown = jobs.shutdown();
///     assert!(stopping.await.is_clean());
/// });
/// ```
///
/// # Panics
///
/// When polled by work inside the scope's subtree, or by its hook: it would wait for itself.
#[must_use = "the shutdown runs anyway; await this for its report"]
pub struct ScopeShutdown {
    scope: Arc<ScopeInner>,
    future: Pin<Box<dyn Future<Output = Report> + Send>>,
}

impl ScopeShutdown {
    fn new(scope: Arc<ScopeInner>) -> ScopeShutdown {
        let waited = scope.clone();
        ScopeShutdown {
            scope,
            future: Box::pin(async move {
                waited.done.cancelled().await;
                waited.report.get().cloned().unwrap_or_default()
            }),
        }
    }
}

impl Future for ScopeShutdown {
    type Output = Report;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Report> {
        refuse_self_wait(&self.scope, "shutdown");
        self.future.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ScopeShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeShutdown")
            .field("path", &&*self.scope.path)
            .finish_non_exhaustive()
    }
}

/// The future [`Scope::finished`](super::Scope::finished) returns.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let jobs = graceful::scope("jobs");
///     jobs.spawn(async {});
///     let finished: graceful::ScopeFinished = jobs.finished();
///     finished.await;
/// });
/// ```
///
/// # Panics
///
/// When polled by work inside the scope's subtree, or by its hook: it would wait for itself.
#[must_use = "futures do nothing unless polled"]
pub struct ScopeFinished {
    scope: Arc<ScopeInner>,
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl ScopeFinished {
    pub(crate) fn new(scope: Arc<ScopeInner>) -> ScopeFinished {
        let waited = scope.clone();
        ScopeFinished {
            scope,
            future: Box::pin(async move {
                if waited.is_root() {
                    // The root's work includes `main`: it is finished when the program is.
                    return waited.done.cancelled().await;
                }
                loop {
                    let mut notified = pin!(waited.changed.notified());
                    notified.as_mut().enable();
                    if waited.subtree().iter().all(|s| s.live(&ALL_KINDS) == 0) {
                        return;
                    }
                    notified.await;
                }
            }),
        }
    }
}

impl Future for ScopeFinished {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        refuse_self_wait(&self.scope, "finished");
        self.future.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ScopeFinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeFinished")
            .field("path", &&*self.scope.path)
            .finish_non_exhaustive()
    }
}
