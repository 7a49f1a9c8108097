//! A scope's turn in a shutdown, the dependencies that order the turns, and the partial shutdown
//! and abort of one scope's subtree.
//!
//! A turn: (1) the scopes that depend on this one finish first; (2) its own work is announced,
//! its `spawn` tasks cancelled, its services, protected futures and blocking jobs drained; (3) its
//! children take their turns, concurrently; (4) its hooks run; then it is done. In the program's
//! shutdown the root's own work is steps 1–3 of the sequence (`shutdown/sequence.rs`), which then
//! starts the root's children here. Each turn runs as a plain tokio task of the runtime.

use std::collections::HashSet;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::time::sleep_until;

use super::tree::ScopeInner;
use crate::context::Shared;
use crate::deadline::{later, until_zero};
use crate::report::{self, Report};
use crate::shutdown::hooks::Hook;
use crate::task::{TaskInfo, TaskKind, KINDS};

/// Everything async: what a turn's deadline aborts.
pub(crate) const ASYNC_KINDS: [TaskKind; 4] = [
    TaskKind::Cancellable,
    TaskKind::Service,
    TaskKind::Protected,
    TaskKind::Hook,
];

/// What a scope's own drain waits for.
const DRAINED: [TaskKind; 4] = [
    TaskKind::Cancellable,
    TaskKind::Service,
    TaskKind::Protected,
    TaskKind::Blocking,
];

const ALL_KINDS: [TaskKind; KINDS] = [
    TaskKind::Cancellable,
    TaskKind::Service,
    TaskKind::Protected,
    TaskKind::Blocking,
    TaskKind::Hook,
];

/// Whose shutdown a turn is part of.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The program's: every scope gets its turn from its parent, so a dependency is only waited
    /// for (unless an ancestor waits for it, which then starts it at once).
    Program,
    /// One scope's subtree: the scopes that depend on one in it are shut down first.
    Partial,
}

/// The groups of a scope's subtree, for the registry.
pub(crate) fn groups(scope: &Arc<ScopeInner>) -> Vec<Arc<str>> {
    scope
        .subtree()
        .iter()
        .filter_map(|s| s.group().cloned())
        .collect()
}

/// Whether an entry of `group` belongs to one of `groups`.
pub(crate) fn picks(groups: &[Arc<str>], group: Option<&Arc<str>>) -> bool {
    group.is_some_and(|g| groups.iter().any(|mine| Arc::ptr_eq(mine, g)))
}

/// Starts `scope`'s turn unless it has one already.
pub(crate) fn start(scope: &Arc<ScopeInner>, shared: &Arc<Shared>, deadline: Instant, mode: Mode) {
    if !scope.claim() {
        return;
    }
    let _ = scope.deadline.set(deadline);
    let (scope, runtime) = (scope.clone(), shared.clone());
    shared.tokio().spawn(async move {
        if !run(&scope, &runtime, deadline, mode).await {
            scope.late.store(true, Ordering::SeqCst);
        }
        scope.done.cancel();
    });
}

/// The whole turn; returns whether it finished before the deadline.
async fn run(scope: &Arc<ScopeInner>, shared: &Arc<Shared>, deadline: Instant, mode: Mode) -> bool {
    wait_dependents(scope, shared, deadline, mode).await;
    own_steps(scope, shared, deadline).await;
    scope.own_drained.cancel();
    let children = run_children(scope, shared, deadline, mode).await;
    // Hooks of children freed before their turn run as this scope's: they end first.
    let freed_hooks = wait_live(scope, &[TaskKind::Hook], deadline).await;
    let hooks = run_hooks(scope, shared, deadline, children && freed_hooks).await;
    // Done: from now on, work spawned into it never runs.
    scope.phase.begin_abort();
    children && hooks && scope.live(&ALL_KINDS) == 0
}

/// Step 1: the scopes that depend on this one finish first.
pub(crate) async fn wait_dependents(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Shared>,
    deadline: Instant,
    mode: Mode,
) {
    let dependents = scope.dependents();
    match mode {
        Mode::Partial => {
            for dependent in &dependents {
                begin(dependent);
            }
        }
        Mode::Program => start_waited_for_by_ancestors(scope, shared, deadline),
    }
    for dependent in dependents {
        until(&dependent.done, deadline).await;
    }
}

/// Starts at once every scope that `scope`'s turn waits for, directly or through a chain of
/// dependencies, and that has an ancestor in that chain (`scope` included).
///
/// Such a scope's turn would otherwise start only once its parent's own work has drained, and
/// that work is waiting, through the chain, for the scope itself: `root.scope("b")` with
/// `b.depends_on(&root)`, or through siblings in between (`c.depends_on(&root)`,
/// `b.depends_on(&c)`). The graph has no cycle (`add_dependency` refuses one), so the walk ends.
fn start_waited_for_by_ancestors(scope: &Arc<ScopeInner>, shared: &Arc<Shared>, deadline: Instant) {
    let mut chain = vec![scope.clone()];
    let mut seen: HashSet<*const ScopeInner> = HashSet::from([Arc::as_ptr(scope)]);
    let mut next = 0;
    while next < chain.len() {
        for dependent in chain[next].dependents() {
            if seen.insert(Arc::as_ptr(&dependent)) {
                chain.push(dependent);
            }
        }
        next += 1;
    }
    for waited in &chain[1..] {
        let mut ancestor = waited.parent();
        while let Some(at) = ancestor {
            if seen.contains(&Arc::as_ptr(at)) {
                start(waited, shared, deadline, Mode::Program);
                break;
            }
            ancestor = at.parent();
        }
    }
}

/// Step 2: announce, cancel, drain this scope's own work (the root's is the sequence's).
async fn own_steps(scope: &Arc<ScopeInner>, shared: &Arc<Shared>, deadline: Instant) {
    scope.token.cancel();
    scope.stop.raise();
    scope.phase.begin_cancel();
    let path = scope.path.clone();
    shared.registry.abort(&[TaskKind::Cancellable], &|g| {
        g.is_some_and(|g| Arc::ptr_eq(g, &path))
    });
    wait_live(scope, &[TaskKind::Cancellable], deadline).await;
    wait_live(scope, &DRAINED, deadline).await;
}

/// Step 3: the children's turns, concurrently. Returns whether all finished before the deadline.
pub(crate) async fn run_children(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Shared>,
    deadline: Instant,
    mode: Mode,
) -> bool {
    let children = scope.children();
    for child in &children {
        start(child, shared, deadline, mode);
    }
    let mut all = true;
    for child in &children {
        all &= until(&child.done, deadline).await && !child.late.load(Ordering::SeqCst);
    }
    all
}

/// Step 4: this scope's hooks, last registered first, if its subtree finished in time.
async fn run_hooks(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Shared>,
    deadline: Instant,
    in_time: bool,
) -> bool {
    let mut all = true;
    while let Some(hook) = scope.hooks.pop() {
        let mut info = TaskInfo::hook(hook.location);
        info.scope = scope.group().cloned();
        if !in_time || Instant::now() >= deadline {
            report::hook_skipped(&info);
            shared.report.log.not_run(&info);
            all = false;
            continue;
        }
        let mut handle =
            crate::tracked::spawn_in(shared, scope, TaskKind::Hook, hook.location, hook.future);
        let deadline = tokio::time::Instant::from_std(deadline);
        if tokio::time::timeout_at(deadline, &mut handle)
            .await
            .is_err()
        {
            all = false;
        }
    }
    all
}

/// Runs `hooks`, in their order, as tracked hooks of `scope`, one at a time: a hook that panics
/// is reported and the next one runs: the hooks of a child of `scope` freed before its turn.
pub(crate) fn run_freed_hooks(
    shared: &Arc<Shared>,
    scope: &Arc<ScopeInner>,
    freed: &ScopeInner,
    mut hooks: Vec<Hook>,
) {
    if scope.phase.cancels_at_once(TaskKind::Hook) {
        // Too late: `scope` is past its turn (aborted, or at its deadline). Said, not lost.
        for hook in &hooks {
            let mut info = TaskInfo::hook(hook.location);
            // The freed scope's path (it has already let go of its parent, so it reads as a root).
            info.scope = Some(freed.path.clone());
            report::hook_skipped(&info);
            shared.report.log.not_run(&info);
        }
        return;
    }
    if hooks.len() == 1 {
        let hook = hooks.remove(0);
        crate::tracked::spawn_in(shared, scope, TaskKind::Hook, hook.location, hook.future);
        return;
    }
    // Several: the first hook's place runs them in turn, so the scope waits for all of them.
    let (runtime, place) = (shared.clone(), scope.clone());
    let location = hooks[0].location;
    let each = async move {
        for hook in hooks {
            let handle = crate::tracked::spawn_in(
                &runtime,
                &place,
                TaskKind::Hook,
                hook.location,
                hook.future,
            );
            let _ = handle.await;
        }
    };
    crate::tracked::spawn_in(shared, scope, TaskKind::Hook, location, each);
}

/// Waits until the scope has no live work of `kinds`; `false` at the deadline.
async fn wait_live(scope: &ScopeInner, kinds: &[TaskKind], deadline: Instant) -> bool {
    let deadline = tokio::time::Instant::from_std(deadline);
    until_zero(&scope.changed, || scope.live(kinds), deadline).await
}

/// Waits for `event`; `false` at the deadline.
async fn until(event: &tokio_util::sync::CancellationToken, deadline: Instant) -> bool {
    let deadline = tokio::time::Instant::from_std(deadline);
    tokio::select! {
        _ = event.cancelled() => true,
        _ = sleep_until(deadline) => event.is_cancelled(),
    }
}

/// A scope made under a parent whose turn is past its own work gets its turn at once.
pub(crate) fn joined_late(scope: &Arc<ScopeInner>) {
    let Some(parent) = scope.parent() else {
        return;
    };
    if !parent.own_drained.is_cancelled() {
        return;
    }
    if let (Some(shared), Some(&deadline)) = (scope.runtime(), parent.deadline.get()) {
        start(scope, &shared, deadline, Mode::Program);
    }
}

/// `a.depends_on(b)`: `b`'s turn waits until `a` has finished.
#[track_caller]
pub(crate) fn add_dependency(a: &Arc<ScopeInner>, b: &Arc<ScopeInner>) {
    if let Some(cycle) = path_to(a, b) {
        let names: Vec<String> = cycle.iter().map(|s| describe(s)).collect();
        panic!(
            "graceful: {} cannot depend on {}: it would make a cycle ({} waits for {})",
            describe(a),
            describe(b),
            describe(b),
            names.join(", which waits for ")
        );
    }
    b.add_dependent(a);
}

fn describe(scope: &ScopeInner) -> String {
    if scope.is_root() {
        "the root scope".into()
    } else {
        format!("`{}`", scope.path)
    }
}

/// What `from`'s finish waits for, as a path from `from` to `to` (both included), if it reaches
/// `to`: its dependents (they finish before its turn) and its children (it finishes after them).
fn path_to(from: &Arc<ScopeInner>, to: &Arc<ScopeInner>) -> Option<Vec<Arc<ScopeInner>>> {
    let mut seen: Vec<(Arc<ScopeInner>, usize)> = vec![(from.clone(), usize::MAX)];
    let mut next = 0;
    while next < seen.len() {
        let at = seen[next].0.clone();
        if Arc::ptr_eq(&at, to) {
            let mut path = vec![at];
            let mut back = seen[next].1;
            while back != usize::MAX {
                path.push(seen[back].0.clone());
                back = seen[back].1;
            }
            path.reverse();
            return Some(path);
        }
        for waited in at.dependents().into_iter().chain(at.children()) {
            if !seen.iter().any(|(s, _)| Arc::ptr_eq(s, &waited)) {
                seen.push((waited, next));
            }
        }
        next += 1;
    }
    None
}

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
            let grace = scope.own_grace().unwrap_or(shared.config.grace);
            let mut deadline = later(now, grace);
            if let Some(started) = shared.shutdown.trigger.started() {
                deadline = deadline.min(started.deadline);
            }
            let _ = scope.deadline.set(deadline);
            // What the report covers: the subtree as it is now (a scope freed during the
            // shutdown is still in it), and what is logged from now on.
            let since = since.unwrap_or_else(|| shared.report.log.mark());
            let groups = groups(scope);
            let (scope, runtime) = (scope.clone(), shared.clone());
            shared.tokio().spawn(async move {
                let in_time = run(&scope, &runtime, deadline, Mode::Partial).await;
                let report = end_of_partial(&scope, &runtime, now, in_time, groups, since);
                let _ = scope.report.set(report);
                scope.done.cancel();
            });
        }
    }
}

/// At a partial shutdown's end: abort what is left of the subtree and say how it went, from what
/// was logged `since` its start in the scopes of `groups` (its subtree at the start) and of its
/// subtree now.
fn end_of_partial(
    scope: &Arc<ScopeInner>,
    shared: &Shared,
    at: Instant,
    in_time: bool,
    mut groups: Vec<Arc<str>>,
    since: report::LogMark,
) -> Report {
    let known: HashSet<*const u8> = groups.iter().map(|g| g.as_ptr()).collect();
    groups.extend(
        self::groups(scope)
            .into_iter()
            .filter(|g| !known.contains(&g.as_ptr())),
    );
    let which = |g: Option<&Arc<str>>| picks(&groups, g);
    let mut report = Report {
        reason: shared.shutdown.trigger.started().map(|s| s.reason.clone()),
        ..Report::default()
    };
    if !in_time {
        for inner in scope.subtree() {
            inner.phase.begin_abort();
        }
        report.aborted = shared.registry.abort_listing(&ASYNC_KINDS, &which);
        report::aborted(&report.aborted);
        report.abandoned = shared
            .registry
            .snapshot_of(&which)
            .into_iter()
            .filter(|t| t.kind == TaskKind::Blocking)
            .collect();
        report::abandoned(&report.abandoned);
    }
    shared
        .report
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
    let aborted = if scope.is_root() {
        shared.start_shutdown(crate::Reason::Requested);
        shared
            .registry
            .abort_listing(&ASYNC_KINDS, &crate::registry::any)
    } else {
        let groups = groups(scope);
        shared
            .registry
            .abort_listing(&ASYNC_KINDS, &|g| picks(&groups, g))
    };
    if !aborted.is_empty() {
        report::scope_aborted(&scope.path, &aborted);
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
                    shared.is_some_and(|s| std::ptr::eq(Arc::as_ptr(&s.shutdown.root), scope))
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
