//! The scope tree: one node per scope ([`ScopeInner`]), holding its work's counts, its token and
//! stop flag, its hooks, its children and dependents (held weakly, so ended scopes are freed), and
//! the state of its turn; and the thread's current scope.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::phase::Phase;
use crate::registry::{Label, SharedLabel};
use crate::report::{LogMark, Report};
use crate::runtime::Runtime;
use crate::shutdown::hooks::{Hook, Hooks};
use crate::stop_flag::StopFlag;
use crate::task::{TaskKind, KINDS};

pub(crate) struct ScopeInner {
    name: Cow<'static, str>,
    /// The group label of the scope's work; its pointer tells scopes apart.
    pub(crate) path: Arc<str>,
    parent: Option<Arc<ScopeInner>>,
    runtime: Weak<Runtime>,
    pub(crate) token: CancellationToken,
    pub(crate) stop: StopFlag,
    pub(crate) phase: Phase,
    pub(crate) hooks: Hooks,
    /// The scope's own live work by kind (not its children's). The root's own work is counted by
    /// the registry instead (its ungrouped entries), so the hot root spawn touches no shared
    /// counter.
    live: [AtomicUsize; KINDS],
    /// Notified when a count of this scope, or of a scope below it, reaches zero.
    pub(crate) changed: Notify,
    children: Mutex<Vec<Weak<ScopeInner>>>,
    /// Scopes that have declared `depends_on(self)`: they finish before this scope's turn.
    dependents: Mutex<Vec<Weak<ScopeInner>>>,
    isolated: AtomicBool,
    grace: Mutex<Option<Duration>>,
    /// The scope's turn has been claimed (by the program's shutdown or a partial one).
    claimed: AtomicBool,
    /// Its turn's deadline, once claimed: children created late inherit it.
    pub(crate) deadline: OnceLock<Instant>,
    /// Its own work has drained: its children may take their turns.
    pub(crate) own_drained: CancellationToken,
    /// Its whole subtree has finished and its hooks have run (or it was aborted).
    pub(crate) done: CancellationToken,
    /// Its turn ended at its deadline, with work left or hooks not run.
    pub(crate) late: AtomicBool,
    /// The report of its partial shutdown, once over.
    pub(crate) report: OnceLock<Report>,
}

/// `Scope` names are joined by `/` into paths.
pub(crate) const SEPARATOR: char = '/';

impl ScopeInner {
    /// The label of unnamed work spawned here from `location`: the one this thread made last, if
    /// it was for this scope and this call site too (a loop spawning handlers shares one).
    #[inline]
    pub(crate) fn label_at(&self, location: &'static Location<'static>) -> SharedLabel {
        SharedLabel::reuse(
            &LAST_LABEL,
            |label| label.is_for(&self.path, location),
            || {
                let group = Some(self.path.clone());
                SharedLabel::new(
                    location,
                    Label {
                        group,
                        ..Label::default()
                    },
                )
            },
        )
    }

    /// The root scope of a runtime: the program.
    pub(crate) fn root(runtime: Weak<Runtime>, token: CancellationToken) -> Arc<ScopeInner> {
        Arc::new(ScopeInner::new(
            Cow::Borrowed(""),
            Arc::from(""),
            None,
            runtime,
            token,
        ))
    }

    /// A new child of `parent`, in its runtime, at `path`; its parent holds it weakly.
    pub(crate) fn child(
        parent: &Arc<ScopeInner>,
        name: Cow<'static, str>,
        path: Arc<str>,
    ) -> Arc<ScopeInner> {
        let inner = Arc::new(ScopeInner::new(
            name,
            path,
            Some(parent.clone()),
            parent.runtime.clone(),
            CancellationToken::new(),
        ));
        push_pruned(&mut lock(&parent.children), Arc::downgrade(&inner));
        inner
    }

    fn new(
        name: Cow<'static, str>,
        path: Arc<str>,
        parent: Option<Arc<ScopeInner>>,
        runtime: Weak<Runtime>,
        token: CancellationToken,
    ) -> ScopeInner {
        ScopeInner {
            name,
            path,
            parent,
            runtime,
            token,
            stop: StopFlag::new(),
            phase: Phase::default(),
            hooks: Hooks::default(),
            live: Default::default(),
            changed: Notify::new(),
            children: Mutex::new(Vec::new()),
            dependents: Mutex::new(Vec::new()),
            isolated: AtomicBool::new(false),
            grace: Mutex::new(None),
            claimed: AtomicBool::new(false),
            deadline: OnceLock::new(),
            own_drained: CancellationToken::new(),
            done: CancellationToken::new(),
            late: AtomicBool::new(false),
            report: OnceLock::new(),
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// The group of the scope's work in the registry: `None` for the root's.
    pub(crate) fn group(&self) -> Option<&Arc<str>> {
        (!self.is_root()).then_some(&self.path)
    }

    pub(crate) fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime.upgrade()
    }

    pub(crate) fn parent(&self) -> Option<&Arc<ScopeInner>> {
        self.parent.as_ref()
    }

    /// Its turn's first step: its work is told to stop.
    pub(crate) fn announce(&self) {
        self.token.cancel();
        self.stop.raise();
    }

    pub(crate) fn live(&self, kinds: &[TaskKind]) -> usize {
        kinds
            .iter()
            .map(|k| self.live[k.index()].load(Ordering::SeqCst))
            .sum()
    }

    pub(crate) fn children(&self) -> Vec<Arc<ScopeInner>> {
        lock(&self.children)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn dependents(&self) -> Vec<Arc<ScopeInner>> {
        lock(&self.dependents)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    pub(crate) fn own_grace(&self) -> Option<Duration> {
        *lock(&self.grace)
    }

    /// Whether its turn has been claimed: it is shutting down, or waiting to.
    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::SeqCst)
    }

    /// Claims the scope's turn; `true` for the one caller that got it.
    pub(crate) fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::SeqCst)
    }

    /// This scope and every scope below it.
    pub(crate) fn subtree(self: &Arc<Self>) -> Vec<Arc<ScopeInner>> {
        let mut out = vec![self.clone()];
        let mut next = 0;
        while next < out.len() {
            let children = out[next].children();
            out.extend(children);
            next += 1;
        }
        out
    }

    /// The nearest isolated scope, this one or above: where `stop_on_panic` and `stop_on_error`
    /// act for work in it.
    pub(crate) fn isolating(self: &Arc<Self>) -> Option<Arc<ScopeInner>> {
        let mut at = Some(self.clone());
        while let Some(scope) = at {
            if scope.is_isolated() {
                return Some(scope);
            }
            at = scope.parent.clone();
        }
        None
    }

    /// Registers a hook: it runs at the end of the scope's turn, or when the scope is freed
    /// before its turn (see `Drop`).
    pub(crate) fn add_hook(
        &self,
        location: &'static Location<'static>,
        hook: crate::shutdown::hooks::HookFuture,
    ) {
        self.hooks.push(location, hook);
    }

    /// Starts this scope's partial shutdown, as `Scope::shutdown` does; its report counts what
    /// was logged from `since` on.
    pub(crate) fn begin_turn(self: &Arc<Self>, since: Option<LogMark>) {
        if let Some(shared) = self.runtime() {
            (shared.turns().begin)(self, since);
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether `runtime` is the runtime this scope belongs to.
    pub(crate) fn belongs_to(&self, runtime: &Arc<Runtime>) -> bool {
        Arc::as_ptr(runtime) == self.runtime.as_ptr()
    }

    pub(crate) fn isolate(&self) {
        self.isolated.store(true, Ordering::SeqCst);
    }

    pub(crate) fn set_grace(&self, grace: Duration) {
        *lock(&self.grace) = Some(grace);
    }

    /// `dependent` finishes before this scope's turn (`dependent.depends_on(self)`).
    pub(crate) fn add_dependent(&self, dependent: &Arc<ScopeInner>) {
        push_pruned(&mut lock(&self.dependents), Arc::downgrade(dependent));
    }

    pub(crate) fn counted(&self, kind: TaskKind) {
        self.live[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn uncounted(&self, kind: TaskKind) {
        if self.live[kind.index()].fetch_sub(1, Ordering::SeqCst) == 1 {
            // Whoever waits on this scope or on one above it (`finished`, a turn) looks again.
            let mut at = Some(self);
            while let Some(scope) = at {
                scope.changed.notify_waiters();
                at = scope.parent.as_deref();
            }
        }
    }
}

/// A scope freed before its turn — every handle dropped, all its work ended — runs its hooks now,
/// as at the end of a turn: last registered first, each as a hook of its parent (which then waits
/// for it). A scope per connection or per tenant with a hook is so freed when it is done, rather
/// than kept until the program's shutdown.
impl Drop for ScopeInner {
    fn drop(&mut self) {
        let Some(parent) = self.parent.take() else {
            return;
        };
        let hooks = self.hooks.take_all();
        if hooks.is_empty() {
            return;
        }
        if let Some(shared) = self.runtime() {
            (shared.turns().run_freed_hooks)(&shared, &parent, self, hooks);
        }
    }
}

/// What a scope's turn does (`turn.rs`) that the tree and the core, lower layers, ask for: each
/// runtime's core is handed it when it is made (`partial::turns()`), and a scope reaches it through
/// its runtime.
#[derive(Clone, Copy)]
pub(crate) struct Turns {
    /// Runs the hooks of a scope freed before its turn, as hooks of its parent.
    pub(crate) run_freed_hooks: fn(&Arc<Runtime>, &Arc<ScopeInner>, &ScopeInner, Vec<Hook>),
    /// Starts a scope's partial shutdown, its report counting from `since`.
    pub(crate) begin: fn(&Arc<ScopeInner>, Option<LogMark>),
}

/// Adds `new` to a list of weak references, first dropping the dead ones when the list has grown
/// to twice what was alive at the last pruning: the memory of ended scopes is given back, at an
/// amortised constant cost per addition.
fn push_pruned(list: &mut Vec<Weak<ScopeInner>>, new: Weak<ScopeInner>) {
    if list.len() >= 16 && list.len().is_power_of_two() {
        list.retain(|weak| weak.strong_count() > 0);
        list.shrink_to(list.len() * 2);
    }
    list.push(new);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The label this thread last made for unnamed work in a scope: see `ScopeInner::label_at`.
    static LAST_LABEL: RefCell<Option<SharedLabel>> = const { RefCell::new(None) };

    /// The scope of the work being polled on this thread, if it is not the root: borrowed from
    /// the `Arc` the work holds, for as long as an [`Entered`] guard lives (null otherwise).
    /// A pointer rather than an `Arc`, so that entering a scope on every poll costs no atomic
    /// reference-count operation.
    static CURRENT: Cell<*const ScopeInner> = const { Cell::new(std::ptr::null()) };
}

/// The current scope of this thread, if work of a scope other than the root is running here.
#[inline]
pub(crate) fn current() -> Option<Arc<ScopeInner>> {
    let current = CURRENT.try_with(Cell::get).unwrap_or(std::ptr::null());
    if current.is_null() {
        return None;
    }
    // SAFETY: a non-null pointer was set by `enter` from an `Arc` that its guard borrows, and
    // the guard puts the previous pointer back when it drops: so the `Arc` this one came from is
    // alive now, and taking one more count of it is sound.
    unsafe {
        Arc::increment_strong_count(current);
        Some(Arc::from_raw(current))
    }
}

/// Makes `scope` the current scope until the guard drops (unwinding included). The guard borrows
/// the `Arc`, so the scope outlives its time as the current one.
pub(crate) struct Entered<'a> {
    previous: *const ScopeInner,
    _scope: std::marker::PhantomData<&'a Arc<ScopeInner>>,
}

pub(crate) fn enter(scope: &Arc<ScopeInner>) -> Entered<'_> {
    let previous = CURRENT
        .try_with(|cell| cell.replace(Arc::as_ptr(scope)))
        .unwrap_or(std::ptr::null());
    Entered {
        previous,
        _scope: std::marker::PhantomData,
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|cell| cell.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Arc<ScopeInner> {
        ScopeInner::root(Weak::new(), CancellationToken::new())
    }

    #[test]
    fn entering_nests_and_puts_the_previous_scope_back() {
        let (outer, inner) = (scope(), scope());
        assert!(current().is_none());
        {
            let _outer = enter(&outer);
            assert!(Arc::ptr_eq(&current().unwrap(), &outer));
            {
                let _inner = enter(&inner);
                let seen = current().unwrap();
                assert!(Arc::ptr_eq(&seen, &inner));
                // `current` hands out a count of its own: the scope is shared, not borrowed.
                assert_eq!(Arc::strong_count(&inner), 2);
                drop(seen);
            }
            assert!(Arc::ptr_eq(&current().unwrap(), &outer));
        }
        assert!(current().is_none());
        // Entering took no count.
        assert_eq!(Arc::strong_count(&outer), 1);
        assert_eq!(Arc::strong_count(&inner), 1);
    }

    #[test]
    fn a_panic_while_entered_still_puts_the_previous_scope_back() {
        let outer = scope();
        let _outer = enter(&outer);
        let inner = scope();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _inner = enter(&inner);
            panic!("work of the inner scope panicked");
        }));
        assert!(caught.is_err());
        assert!(Arc::ptr_eq(&current().unwrap(), &outer));
    }
}
