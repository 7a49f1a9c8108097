//! Where tracked work meets the registry: [`Slot`], the entry's owner inside the work, and
//! [`Tracked`], the wrapper every async kind is spawned in.
//!
//! The registry only stores; this is where a piece of work's life becomes entries in and out, and
//! where its panics are handed to the trigger (which decides what they mean).

use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::context;
use crate::registry::{At, Label, RegistryId};
use crate::runtime::Runtime;
use crate::scope::tree::{Entered, ScopeInner};
use crate::task::TaskKind;

/// Owned by the tracked work; its entry goes when it is dropped (completion, cancellation, panic).
///
/// Eight bytes in every tracked task, and no pointer: the registry is found through the thread,
/// because only the runtime's own threads drop its work. Tokio drops a task's future on a worker
/// (or, once the runtime has shut down, on the thread that spawns it), and blocking jobs end on
/// the runtime's blocking threads. An `Arc` here would bounce its counter between the spawning
/// core and the completing one on every task.
///
/// It also keeps the work's [`Place`]: nothing for the root's work, the scope for a scope's.
pub(crate) struct Slot<P: Place = Root> {
    at: At,
    registry: RegistryId,
    kind: TaskKind,
    /// A `Cell`, so that a panic can be marked while the slot's scope is entered.
    progress: Cell<Progress>,
    place: P,
}

/// Where tracked work belongs, kept in its [`Slot`]: the scope it is counted in, polled in and
/// cancelled with. A type rather than an `Option`, so that the root's work, most of it, keeps
/// nothing.
pub(crate) trait Place {
    fn scope(&self) -> Option<&Arc<ScopeInner>>;
}

/// The root's work: its scope is the runtime's, found through the thread.
pub(crate) struct Root;

impl Place for Root {
    #[inline(always)]
    fn scope(&self) -> Option<&Arc<ScopeInner>> {
        None
    }
}

/// A scope's work (never the root scope's: see [`Root`]).
impl Place for Arc<ScopeInner> {
    #[inline(always)]
    fn scope(&self) -> Option<&Arc<ScopeInner>> {
        Some(self)
    }
}

/// Work that may be either, chosen at run time: a blocking job.
impl Place for Option<Arc<ScopeInner>> {
    fn scope(&self) -> Option<&Arc<ScopeInner>> {
        self.as_ref()
    }
}

/// How far the tracked work has come, as its wrapper sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Never polled: `Tracked` cancels a task spawned after the cancel step before it runs.
    Fresh,
    Polled,
    /// Its panic has been reported: tokio drops the future while that panic still unwinds, and
    /// the slot's drop must not report it a second time.
    Panicked,
}

impl Slot {
    /// `main`'s entry: a service the sequence drops itself.
    pub(crate) fn main(shared: &Runtime, location: &'static Location<'static>) -> Slot {
        let at = shared.registry().insert_main(location);
        Slot::new(shared, at, TaskKind::Service, Root)
    }
}

impl<P: Place> Slot<P> {
    /// The slot of the work at `at`, counted in its place's scope until it drops.
    #[inline]
    pub(crate) fn new(shared: &Runtime, at: At, kind: TaskKind, place: P) -> Slot<P> {
        if let Some(scope) = place.scope() {
            scope.counted(kind);
        }
        Slot {
            at,
            registry: shared.registry().id(),
            kind,
            progress: Cell::new(Progress::Fresh),
            place,
        }
    }

    /// An entry for work with no abort handle (a blocking job) in `place`.
    pub(crate) fn insert_in(
        shared: &Runtime,
        kind: TaskKind,
        label: Label,
        location: &'static Location<'static>,
        place: P,
    ) -> Slot<P> {
        Slot::new(
            shared,
            shared.registry().insert(kind, label, location),
            kind,
            place,
        )
    }

    /// Makes the work's scope the current one until the guard drops: `None` for the root's.
    #[inline]
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        self.place.scope().map(crate::scope::tree::enter)
    }

    /// Runs `f` with the runtime this slot's work belongs to: the one of the thread it runs on.
    fn with_runtime<R>(&self, f: impl FnOnce(&Arc<Runtime>) -> R) -> Option<R> {
        context::with(|shared| shared.filter(|s| s.registry().id() == self.registry).map(f))
    }

    /// Whether the work must not start: see `Phase::cancels_at_once`.
    fn cancels_at_once(&self) -> bool {
        if let Some(scope) = self.place.scope() {
            return scope.phase.cancels_at_once(self.kind);
        }
        // Until some shutdown of the process begins, the runtime need not be looked up.
        if !crate::phase::any_phase_left_running() {
            return false;
        }
        self.with_runtime(|shared| shared.shutdown().root.phase.cancels_at_once(self.kind))
            .unwrap_or(false)
    }

    /// Reports a failure of this work (a service's `Err`), described by its entry.
    pub(crate) fn failed(&self, error: &str) {
        self.with_runtime(|shared| {
            // `None` while the spawner has not filled the entry in: the work ran to its end on
            // another worker first. The spawner is between tokio's spawn and the fill, running
            // nothing of the user's, so the wait is short.
            let info = loop {
                match shared.registry().describe(self.at) {
                    Some(info) => break info,
                    None => std::thread::yield_now(),
                }
            };
            shared.service_failed(&info, error, self.place.scope());
        });
    }

    /// Hands a panic of this work to the trigger, which reports it and decides what it means.
    pub(crate) fn panicked(&self) {
        self.progress.set(Progress::Panicked);
        self.with_runtime(|shared| {
            if let Some(info) = shared.registry().mark_panicked(self.at) {
                shared.task_panicked(&info, self.place.scope());
            }
        });
    }
}

impl<P: Place> Drop for Slot<P> {
    fn drop(&mut self) {
        // The slot is dropped after the future it tracks (see `Tracked`): unwinding here means
        // that future panicked while being dropped — a `Drop` in cancelled work. tokio catches
        // it; it must still be reported and counted like any panic of tracked work.
        if std::thread::panicking() && self.progress.get() != Progress::Panicked {
            self.panicked();
        }
        self.with_runtime(|shared| shared.registry().release(self.at));
        // The entry first, then the scope's count: whoever the count wakes finds no entry left.
        if let Some(scope) = self.place.scope() {
            scope.uncounted(self.kind);
        }
    }
}

/// What [`Tracked`] does with its work's output before the `JoinHandle` gets it: nothing, or a
/// service's check for failure. A type rather than a field, so that it costs the task no bytes:
/// the check describes the work from its registry entry.
pub(crate) trait Check<T> {
    fn check<P: Place>(slot: &Slot<P>, output: &T);
}

/// The output goes to the `JoinHandle` as it is.
pub(crate) enum Unchecked {}

impl<T> Check<T> for Unchecked {
    #[inline(always)]
    fn check<P: Place>(_: &Slot<P>, _: &T) {}
}

pin_project! {
    /// A spawned future and its registry entry: the entry goes when the future is dropped,
    /// however that happens (completion, cancellation, panic, runtime shutdown). The future is
    /// declared first so that it is dropped first: a panic in its `Drop` unwinds through the
    /// slot's, which reports it.
    pub(crate) struct Tracked<F, C = Unchecked, P: Place = Root> {
        #[pin]
        future: F,
        slot: Slot<P>,
        check: PhantomData<fn() -> C>,
    }
}

impl<F, C, P: Place> Tracked<F, C, P> {
    pub(crate) fn new(future: F, slot: Slot<P>) -> Tracked<F, C, P> {
        Tracked {
            future,
            slot,
            check: PhantomData,
        }
    }
}

impl<F: Future, C: Check<F::Output>, P: Place> Future for Tracked<F, C, P> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.slot.progress.get() == Progress::Fresh {
            this.slot.progress.set(Progress::Polled);
            // Spawned after its step began: the spawner's abort is on its way. Never running the
            // body is what `spawn`'s docs promise ("cancelled before its first poll").
            if this.slot.cancels_at_once() {
                return Poll::Pending;
            }
        }
        // Entered for the whole poll: a panic or a failure reported below is the scope's.
        let _entered = this.slot.enter();
        match catch_unwind(AssertUnwindSafe(|| this.future.poll(cx))) {
            Ok(Poll::Ready(output)) => {
                C::check(this.slot, &output);
                Poll::Ready(output)
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                this.slot.panicked();
                resume_unwind(payload)
            }
        }
    }
}

/// Spawns `future` on `shared`'s runtime as unnamed tracked work of `kind`, in the root scope.
pub(crate) fn spawn<F>(
    shared: &Runtime,
    kind: TaskKind,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let root = &shared.shutdown().root;
    spawn_filled::<Unchecked, F>(shared, root, kind, future, |at, abort| {
        shared.registry().fill_unnamed(at, kind, location, abort)
    })
}

/// Spawns `future` as tracked work named `name` in the root scope, with `C` checking the output.
pub(crate) fn spawn_named<C, F>(
    shared: &Runtime,
    kind: TaskKind,
    name: Cow<'static, str>,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    C: Check<F::Output> + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let root = &shared.shutdown().root;
    spawn_filled::<C, F>(shared, root, kind, future, |at, abort| {
        shared.registry().fill(at, kind, name, location, abort)
    })
}

/// Spawns `future` as unnamed tracked work of `kind` in `scope`: grouped under the scope's path,
/// counted by the scope, polled with it as the current scope.
pub(crate) fn spawn_in<F>(
    shared: &Runtime,
    scope: &Arc<ScopeInner>,
    kind: TaskKind,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if scope.is_root() {
        return spawn(shared, kind, location, future);
    }
    // Unnamed work shares its call site's label with the work spawned there before.
    spawn_filled::<Unchecked, F>(shared, scope, kind, future, |at, abort| {
        let label = scope.label_at(location);
        shared.registry().fill_shared(at, kind, label, abort)
    })
}

/// Spawns `future` as tracked work named `name` in `scope` (or the root), with `C` checking the
/// output: a service.
pub(crate) fn spawn_named_in<C, F>(
    shared: &Runtime,
    scope: &Arc<ScopeInner>,
    kind: TaskKind,
    name: Cow<'static, str>,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    C: Check<F::Output> + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if scope.is_root() {
        return spawn_named::<C, F>(shared, kind, name, location, future);
    }
    spawn_labelled_checked::<C, F>(shared, scope, kind, Label::named(name), location, future)
}

/// Spawns `future` as tracked work with a label of the caller's making, in `scope` or the root.
pub(crate) fn spawn_labelled<F>(
    shared: &Runtime,
    scope: &Arc<ScopeInner>,
    kind: TaskKind,
    label: Label,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_labelled_checked::<Unchecked, F>(shared, scope, kind, label, location, future)
}

fn spawn_labelled_checked<C, F>(
    shared: &Runtime,
    scope: &Arc<ScopeInner>,
    kind: TaskKind,
    mut label: Label,
    location: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    C: Check<F::Output> + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if !scope.is_root() {
        label.group = Some(scope.path.clone());
    }
    spawn_filled::<C, F>(shared, scope, kind, future, |at, abort| {
        shared
            .registry()
            .fill_labelled(at, kind, label, location, abort)
    })
}

/// Spawns `future` in `scope` (or the root) with a reserved entry that `fill` fills in.
#[inline(always)]
fn spawn_filled<C, F>(
    shared: &Runtime,
    scope: &Arc<ScopeInner>,
    kind: TaskKind,
    future: F,
    fill: impl FnOnce(At, tokio::task::AbortHandle) -> Option<crate::task::TaskInfo>,
) -> JoinHandle<F::Output>
where
    C: Check<F::Output> + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let at = shared.registry().reserve();
    let handle = if scope.is_root() {
        let slot = Slot::new(shared, at, kind, Root);
        shared.tokio().spawn(Tracked::<F, C>::new(future, slot))
    } else {
        let slot = Slot::new(shared, at, kind, scope.clone());
        shared.tokio().spawn(Tracked::<F, C, _>::new(future, slot))
    };
    if let Some(info) = fill(at, handle.abort_handle()) {
        // Reported from the spawner's thread, but handled by the work's own scope.
        shared.task_panicked(&info, (!scope.is_root()).then_some(scope));
    }
    // Checked after filling: either the step saw the live entry, or we see its phase.
    if scope.phase.cancels_at_once(kind) {
        handle.abort();
    }
    handle
}

#[cfg(test)]
mod tests;
