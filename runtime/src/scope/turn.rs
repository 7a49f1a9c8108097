//! A scope's turn in a shutdown, and the dependencies that order the turns.
//!
//! A turn: (1) the scopes that depend on this one finish first; (2) its own work is announced,
//! its `spawn` tasks cancelled, its services, protected futures and blocking jobs drained; (3) its
//! children take their turns, concurrently; (4) its hooks run; then it is done. The program's
//! shutdown is the root's turn, run by the sequence (`shutdown/sequence.rs`) with `main` polled
//! alongside; every other turn runs as a plain tokio task of the runtime.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::time::sleep_until;

use super::tree::ScopeInner;
use crate::deadline::{race, until_zero, First};
use crate::report;
use crate::report::summary::Summary;
use crate::runtime::Runtime;
use crate::shutdown::hooks::Hook;
use crate::task::{TaskInfo, TaskKind, KINDS};

/// Everything async: what a turn's deadline aborts.
pub(crate) const ASYNC_KINDS: [TaskKind; 4] = [
    TaskKind::Cancellable,
    TaskKind::Service,
    TaskKind::Protected,
    TaskKind::Hook,
];

pub(crate) const ALL_KINDS: [TaskKind; KINDS] = [
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
pub(crate) fn start(scope: &Arc<ScopeInner>, shared: &Arc<Runtime>, deadline: Instant, mode: Mode) {
    if !scope.claim() {
        return;
    }
    let _ = scope.deadline.set(deadline);
    let (scope, runtime) = (scope.clone(), shared.clone());
    shared.tokio().spawn(async move {
        if !run(&scope, &runtime, deadline, mode, None).await {
            scope.late.store(true, Ordering::SeqCst);
        }
        scope.done.cancel();
    });
}

/// The root's turn in the program's shutdown: the sequence's steps 1 to 4, counted into its
/// `summary` and reported as each ends. After it the sequence itself waits for what the hooks
/// started and joins the blocking jobs.
pub(crate) async fn program(root: &Arc<ScopeInner>, shared: &Arc<Runtime>, summary: &mut Summary) {
    let deadline = summary.deadline();
    root.claim();
    let _ = root.deadline.set(deadline);
    run(root, shared, deadline, Mode::Program, Some(summary)).await;
}

/// The whole turn; returns whether it finished before the deadline. `program` is the program's
/// summary when this is the root's turn in its shutdown.
pub(crate) async fn run(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Runtime>,
    deadline: Instant,
    mode: Mode,
    mut program: Option<&mut Summary>,
) -> bool {
    wait_dependents(scope, shared, deadline, mode).await;
    let drained = own_steps(scope, shared, deadline, program.as_deref_mut()).await;
    scope.own_drained.cancel();
    let step = Instant::now();
    let scopes = scope.children().len();
    let children = run_children(scope, shared, deadline, mode).await;
    if program.is_some() && scopes > 0 {
        report::phase("scopes", step, &[("scopes", scopes)]);
    }
    // Hooks of children freed before their turn run as this scope's: they end first.
    let freed_hooks = wait_own(scope, shared, &[TaskKind::Hook], deadline).await;
    let in_time = drained && children && freed_hooks;
    let hooks = run_hooks(scope, shared, deadline, in_time, program.as_deref_mut()).await;
    if program.is_some() {
        // What the hooks started still runs: the sequence gives it until the deadline.
        return in_time && hooks;
    }
    // Done: from now on, work spawned into it never runs.
    scope.phase.begin_abort();
    children && hooks && scope.live(&ALL_KINDS) == 0
}

/// Step 1: the scopes that depend on this one finish first.
async fn wait_dependents(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Runtime>,
    deadline: Instant,
    mode: Mode,
) {
    let dependents = scope.dependents();
    match mode {
        Mode::Partial => {
            for dependent in &dependents {
                dependent.begin_turn(None);
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
fn start_waited_for_by_ancestors(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Runtime>,
    deadline: Instant,
) {
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

/// Step 2: announce, cancel, drain this scope's own work. Returns whether it drained in time.
async fn own_steps(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Runtime>,
    deadline: Instant,
    mut program: Option<&mut Summary>,
) -> bool {
    // Announce.
    scope.announce();
    if let Some(summary) = program.as_deref() {
        report::phase("announce", summary.started_at(), &[]);
    }

    // Cancel every `spawn` task and wait until each has been dropped.
    let step = Instant::now();
    scope.phase.begin_cancel();
    let cancelled = cancel_own(scope, shared).await;
    wait_own(scope, shared, &[TaskKind::Cancellable], deadline).await;
    if let Some(summary) = program.as_deref_mut() {
        summary.cancelled = cancelled;
        report::phase("cancel", step, &[("tasks", cancelled)]);
    }

    // Drain services and protected futures (the root's include `main`). Tasks they spawn
    // meanwhile are cancelled before their first poll; the wait counts those too.
    let step = Instant::now();
    let kinds = drained_kinds(scope);
    let draining = own_live(scope, shared, &kinds[1..]);
    let drained = wait_own(scope, shared, &kinds, deadline).await;
    if program.is_some() {
        report::phase("drain", step, &[("services", draining)]);
    }
    drained
}

/// What a scope's own drain waits for: `spawn` tasks first, then the rest. The root's blocking
/// jobs are joined later, with the whole pool, after the hooks.
fn drained_kinds(scope: &ScopeInner) -> Vec<TaskKind> {
    let mut kinds = vec![
        TaskKind::Cancellable,
        TaskKind::Service,
        TaskKind::Protected,
    ];
    if !scope.is_root() {
        kinds.push(TaskKind::Blocking);
    }
    kinds
}

/// Tasks aborted before the aborting task yields: half a worker's local queue, so that the
/// cancellations it queues stay on that worker.
const ABORT_SLICE: usize = 128;

/// Aborts the scope's own `spawn` tasks, a slice at a time; how many.
async fn cancel_own(scope: &ScopeInner, shared: &Arc<Runtime>) -> usize {
    let group = scope.group().cloned();
    let own = move |g: Option<&Arc<str>>| match (&group, g) {
        (None, None) => true,
        (Some(mine), Some(g)) => Arc::ptr_eq(mine, g),
        _ => false,
    };
    let slice = move |registry: &crate::registry::Registry, from| {
        registry.abort_slice(&[TaskKind::Cancellable], &own, from, ABORT_SLICE)
    };
    // The first slice from this thread: with a few tasks that is all of them, and no trip to a
    // worker and back.
    let (first, rest) = slice(shared.registry(), crate::registry::Position::START);
    let Some(rest) = rest else {
        return first;
    };
    // The rest on a worker, a slice at a time: an abort there queues the task on that worker,
    // which then runs the cancellations while their tasks are still in its cache. From the
    // thread that polls `main` every abort would take the runtime's shared queue's lock.
    let aborting = shared.clone();
    let cancelling = shared.tokio().spawn(async move {
        let (mut cancelled, mut from) = (first, Some(rest));
        while let Some(at) = from {
            let (count, next) = slice(aborting.registry(), at);
            cancelled += count;
            from = next;
            tokio::task::yield_now().await;
        }
        cancelled
    });
    cancelling.await.unwrap_or(first)
}

/// Step 3: the children's turns, concurrently. Returns whether all finished before the deadline.
async fn run_children(
    scope: &Arc<ScopeInner>,
    shared: &Arc<Runtime>,
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
    shared: &Arc<Runtime>,
    deadline: Instant,
    in_time: bool,
    mut program: Option<&mut Summary>,
) -> bool {
    let step = Instant::now();
    let (mut all, mut run) = (true, 0);
    while let Some(hook) = scope.hooks.pop() {
        let mut info = TaskInfo::hook(hook.location);
        info.scope = scope.group().cloned();
        if !in_time || Instant::now() >= deadline {
            report::hook_skipped(&info);
            match program.as_deref_mut() {
                Some(summary) => summary.report.hooks_not_run.push(info),
                None => shared.reporter().log.not_run(&info),
            }
            all = false;
            continue;
        }
        run += 1;
        let mut handle =
            crate::tracked::spawn_in(shared, scope, TaskKind::Hook, hook.location, hook.future);
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, &mut handle).await {
            // The tracked wrapper has reported the panic; the next hook runs.
            Ok(Err(err)) if err.is_panic() => {
                if let Some(summary) = program.as_deref_mut() {
                    summary.hooks_panicked += 1;
                }
            }
            Ok(_) => {}
            // Aborted with everything else at the deadline.
            Err(_) => all = false,
        }
    }
    if let Some(summary) = program {
        summary.hooks_run = run;
        report::phase("hooks", step, &[("hooks", run)]);
    }
    all
}

/// Runs `hooks`, in their order, as tracked hooks of `scope`, one at a time: a hook that panics
/// is reported and the next one runs: the hooks of a child of `scope` freed before its turn.
pub(crate) fn run_freed_hooks(
    shared: &Arc<Runtime>,
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
            shared.reporter().log.not_run(&info);
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

/// Waits until the scope has no live work of its own of `kinds`; `false` at the deadline.
async fn wait_own(
    scope: &ScopeInner,
    shared: &Runtime,
    kinds: &[TaskKind],
    deadline: Instant,
) -> bool {
    let deadline = tokio::time::Instant::from_std(deadline);
    let changed = if scope.is_root() {
        shared.registry().changed()
    } else {
        &scope.changed
    };
    until_zero(changed, || own_live(scope, shared, kinds), deadline).await
}

/// The scope's own live work of `kinds`. The root's is counted by the registry: its spawn path,
/// the hot one, keeps no count of its own.
fn own_live(scope: &ScopeInner, shared: &Runtime, kinds: &[TaskKind]) -> usize {
    if scope.is_root() {
        shared.registry().count(kinds)
    } else {
        scope.live(kinds)
    }
}

/// Waits for `event`; `false` at the deadline.
async fn until(event: &tokio_util::sync::CancellationToken, deadline: Instant) -> bool {
    let deadline = tokio::time::Instant::from_std(deadline);
    match race(event.cancelled(), sleep_until(deadline)).await {
        First::A(()) => true,
        First::B(()) => event.is_cancelled(),
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
