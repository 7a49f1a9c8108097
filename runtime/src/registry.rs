//! The registry of tracked work: one entry per live task, service, protected future, blocking job
//! and running hook, with its kind, name, spawn location and start time.
//!
//! The registry is split into shards, each behind its own mutex, and a thread always inserts into
//! the same shard: two threads spawning at once lock different mutexes. Nothing runs user code
//! while holding a shard lock, so a wedged task can never make the registry unreadable for the
//! watchdog or the forced-exit report.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::context::Shared;

/// What kind of tracked work a [`TaskInfo`] describes; it decides what the shutdown does with it.
///
/// # Examples
///
/// ```
/// use graceful::{Builder, TaskKind};
///
/// let code = Builder::new().signals([]).run(async {
///     graceful::spawn_service("ticker", async {
///         graceful::shutdown_requested().await;
///     });
///     let kinds: Vec<TaskKind> = graceful::tasks().iter().map(|t| t.kind).collect();
///     assert!(kinds.contains(&TaskKind::Service));
/// });
/// assert_eq!(code, std::process::ExitCode::SUCCESS);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// Started by [`spawn`](crate::spawn): cancelled as soon as the shutdown starts.
    Task,
    /// Started by [`spawn_service`](crate::spawn_service), or `main` itself: drained.
    Service,
    /// Started by [`shutdown_waits_for`](crate::shutdown_waits_for): waited for, never cancelled.
    Protected,
    /// Started by [`spawn_blocking`](crate::spawn_blocking): joined, then abandoned.
    Blocking,
    /// A running [`on_shutdown`](crate::on_shutdown) hook.
    Hook,
}

const KINDS: usize = 5;

impl TaskKind {
    fn index(self) -> usize {
        self as usize
    }

    /// The word for the dump table's KIND column.
    pub(crate) fn column(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::Service => "service",
            TaskKind::Protected => "protected",
            TaskKind::Blocking => "blocking",
            TaskKind::Hook => "hook",
        }
    }

    /// The words for a sentence: `blocking job "indexer" at ...`.
    fn noun(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::Service => "service",
            TaskKind::Protected => "protected future",
            TaskKind::Blocking => "blocking job",
            TaskKind::Hook => "hook",
        }
    }
}

/// A snapshot of one live piece of tracked work, as [`tasks()`](crate::tasks) returns it.
///
/// Its `Display` is the form the report uses: `service "flusher" at src/main.rs:42:5`.
///
/// # Examples
///
/// ```
/// use graceful::{Builder, TaskKind};
///
/// Builder::new().signals([]).run(async {
///     graceful::spawn_service("flusher", graceful::shutdown_requested());
///     let info = graceful::tasks()
///         .into_iter()
///         .find(|t| t.name == "flusher")
///         .unwrap();
///     assert_eq!(info.kind, TaskKind::Service);
///     assert!(info.to_string().starts_with("service \"flusher\" at "));
/// });
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The name given at spawn; empty for [`spawn`](crate::spawn) tasks, protected futures and hooks.
    pub name: Cow<'static, str>,
    /// Which of the four kinds (or a hook).
    pub kind: TaskKind,
    /// Where it was spawned (`#[track_caller]`).
    pub location: &'static Location<'static>,
    /// How long it has been running.
    pub age: Duration,
    is_main: bool,
}

impl TaskInfo {
    pub(crate) fn is_main(&self) -> bool {
        self.is_main
    }
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_main {
            return f.write_str("main");
        }
        f.write_str(self.kind.noun())?;
        if !self.name.is_empty() {
            write!(f, " {:?}", self.name)?;
        }
        write!(f, " at {}", self.location)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inserted; the spawner has not stored the abort handle yet.
    Pending,
    Armed,
    /// The work ended before the spawner armed it: the spawner removes the entry.
    Finished,
}

/// 32 bytes: one is kept per live task, and SPEC §9 allows 64 bytes per task in all.
struct Entry {
    abort: Option<AbortHandle>,
    location: &'static Location<'static>,
    /// Boxed: most entries (plain `spawn`) have none, and a thin pointer keeps entries small.
    name: Option<Box<Cow<'static, str>>>,
    meta: Meta,
}

/// Start time (microseconds since the registry's epoch: 2^56 µs is two thousand years), kind,
/// state and the `main` flag, in one word.
#[derive(Clone, Copy)]
struct Meta(u64);

impl Meta {
    fn new(started_us: u64, kind: TaskKind, state: State, is_main: bool) -> Meta {
        let state = match state {
            State::Pending => 0,
            State::Armed => 1,
            State::Finished => 2,
        };
        let flags = kind.index() as u64 | state << 3 | u64::from(is_main) << 5;
        Meta(started_us << 8 | flags)
    }

    fn started_us(self) -> u64 {
        self.0 >> 8
    }

    fn kind(self) -> TaskKind {
        [
            TaskKind::Task,
            TaskKind::Service,
            TaskKind::Protected,
            TaskKind::Blocking,
            TaskKind::Hook,
        ][(self.0 & 0b111) as usize]
    }

    fn state(self) -> State {
        match (self.0 >> 3) & 0b11 {
            0 => State::Pending,
            1 => State::Armed,
            _ => State::Finished,
        }
    }

    fn is_main(self) -> bool {
        self.0 & (1 << 5) != 0
    }

    fn with_state(self, state: State) -> Meta {
        Meta::new(self.started_us(), self.kind(), state, self.is_main())
    }

    fn with_main(self) -> Meta {
        Meta(self.0 | 1 << 5)
    }
}

impl Entry {
    fn kind(&self) -> TaskKind {
        self.meta.kind()
    }

    fn state(&self) -> State {
        self.meta.state()
    }

    fn set_state(&mut self, state: State) {
        self.meta = self.meta.with_state(state);
    }
}

/// State the tracked futures reach through their shard, without touching `Shared`.
pub(crate) struct Common {
    /// Signalled when a shard's count of some kind falls to zero while `watching`.
    pub(crate) changed: Notify,
    pub(crate) watching: AtomicBool,
    /// Step 2 has begun: `spawn` tasks are cancelled before their first poll.
    pub(crate) cancelling: AtomicBool,
    /// Step 5 has begun: all async work is aborted before its first poll.
    pub(crate) aborting: AtomicBool,
    pub(crate) panics: AtomicUsize,
    stop_on_panic: bool,
    owner: Weak<Shared>,
    epoch: Instant,
}

impl Common {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub(crate) fn cancels_at_once(&self, kind: TaskKind) -> bool {
        (kind == TaskKind::Task && self.cancelling.load(Ordering::SeqCst))
            || (kind != TaskKind::Blocking && self.aborting.load(Ordering::SeqCst))
    }
}

#[repr(align(64))]
pub(crate) struct Shard {
    inner: Mutex<ShardInner>,
    common: Arc<Common>,
}

struct ShardInner {
    entries: Slab<Entry>,
    live: [usize; KINDS],
}

const SHARDS: usize = 32;

pub(crate) struct Registry {
    shards: Box<[Arc<Shard>]>,
    pub(crate) common: Arc<Common>,
}

/// Where an entry lives, for [`Registry::arm`].
#[derive(Clone, Copy)]
pub(crate) struct At {
    shard: usize,
    key: u32,
}

/// Owned by the tracked work; removes its entry when dropped (completion, cancellation, panic).
pub(crate) struct Slot {
    shard: Arc<Shard>,
    key: u32,
    kind: TaskKind,
    /// Used by `Tracked` to cancel a task spawned after the cancel step before it ever runs.
    pub(crate) polled: bool,
}

fn lock(mutex: &Mutex<ShardInner>) -> MutexGuard<'_, ShardInner> {
    // No user code runs under a shard lock; a poisoned lock only means a bug of ours panicked
    // mid-update of plain counters, which is no reason to stop shutting down.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD_HINT
        .try_with(|hint| {
            let mut value = hint.get();
            if value == usize::MAX {
                value = NEXT.fetch_add(1, Ordering::Relaxed);
                hint.set(value);
            }
            value
        })
        .unwrap_or(0)
}

impl Registry {
    pub(crate) fn new(owner: Weak<Shared>, stop_on_panic: bool) -> Registry {
        let common = Arc::new(Common {
            changed: Notify::new(),
            watching: AtomicBool::new(false),
            cancelling: AtomicBool::new(false),
            aborting: AtomicBool::new(false),
            panics: AtomicUsize::new(0),
            stop_on_panic,
            owner,
            epoch: Instant::now(),
        });
        let shards = (0..SHARDS)
            .map(|_| {
                Arc::new(Shard {
                    inner: Mutex::new(ShardInner {
                        entries: Slab::new(),
                        live: [0; KINDS],
                    }),
                    common: common.clone(),
                })
            })
            .collect();
        Registry { shards, common }
    }

    /// Adds an entry. Work with an abort handle must then be [`arm`](Self::arm)ed.
    pub(crate) fn insert(
        &self,
        kind: TaskKind,
        name: Option<Cow<'static, str>>,
        location: &'static Location<'static>,
        armed: bool,
    ) -> (Slot, At) {
        let index = shard_hint() % SHARDS;
        let shard = &self.shards[index];
        let state = if armed { State::Armed } else { State::Pending };
        let entry = Entry {
            abort: None,
            location,
            name: name.map(Box::new),
            meta: Meta::new(self.common.now_us(), kind, state, false),
        };
        let key = {
            let mut inner = lock(&shard.inner);
            inner.live[kind.index()] += 1;
            inner.entries.insert(entry)
        };
        let key = u32::try_from(key).expect("graceful: more than 4 billion tasks in one shard");
        let slot = Slot {
            shard: shard.clone(),
            key,
            kind,
            polled: false,
        };
        (slot, At { shard: index, key })
    }

    /// `main` is a service named "main" with no abort handle: the sequence drops it itself.
    pub(crate) fn insert_main(&self, location: &'static Location<'static>) -> Slot {
        let (slot, at) = self.insert(TaskKind::Service, Some("main".into()), location, true);
        let entries = &mut lock(&self.shards[at.shard].inner).entries;
        let entry = &mut entries[at.key as usize];
        entry.meta = entry.meta.with_main();
        slot
    }

    pub(crate) fn arm(&self, at: At, abort: AbortHandle) {
        let shard = &self.shards[at.shard];
        let mut inner = lock(&shard.inner);
        let key = at.key as usize;
        if inner.entries[key].state() == State::Finished {
            let entry = shard.remove(&mut inner, key);
            drop(inner);
            drop(entry);
        } else {
            let entry = &mut inner.entries[key];
            entry.abort = Some(abort);
            entry.set_state(State::Armed);
        }
    }

    /// How many live entries there are of these kinds.
    pub(crate) fn count(&self, kinds: &[TaskKind]) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let inner = lock(&shard.inner);
                kinds.iter().map(|k| inner.live[k.index()]).sum::<usize>()
            })
            .sum()
    }

    /// Step 2: from now on `spawn` tasks are cancelled at once; abort those alive. Returns how many.
    pub(crate) fn cancel_tasks(&self) -> usize {
        self.common.cancelling.store(true, Ordering::SeqCst);
        self.abort_where(|kind| kind == TaskKind::Task, |_| ())
    }

    /// Step 5: abort all async work left and say what it was.
    pub(crate) fn abort_all(&self) -> Vec<TaskInfo> {
        self.common.aborting.store(true, Ordering::SeqCst);
        let now = self.common.now_us();
        let mut aborted = Vec::new();
        self.abort_where(
            |kind| kind != TaskKind::Blocking,
            |entry| aborted.push(info(entry, now)),
        );
        aborted
    }

    fn abort_where(&self, which: impl Fn(TaskKind) -> bool, mut seen: impl FnMut(&Entry)) -> usize {
        let mut count = 0;
        for shard in self.shards.iter() {
            let inner = lock(&shard.inner);
            for (_, entry) in inner.entries.iter() {
                if entry.state() == State::Finished || !which(entry.kind()) {
                    continue;
                }
                if let Some(abort) = &entry.abort {
                    abort.abort();
                }
                seen(entry);
                count += 1;
            }
        }
        count
    }

    /// What is alive now, in spawn order within a shard.
    pub(crate) fn snapshot(&self) -> Vec<TaskInfo> {
        let now = self.common.now_us();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let inner = lock(&shard.inner);
            out.extend(
                inner
                    .entries
                    .iter()
                    .filter(|(_, e)| e.state() != State::Finished)
                    .map(|(_, e)| info(e, now)),
            );
        }
        out
    }
}

fn info(entry: &Entry, now_us: u64) -> TaskInfo {
    TaskInfo {
        name: entry.name.as_deref().cloned().unwrap_or(Cow::Borrowed("")),
        kind: entry.kind(),
        location: entry.location,
        age: Duration::from_micros(now_us.saturating_sub(entry.meta.started_us())),
        is_main: entry.meta.is_main(),
    }
}

impl Shard {
    fn remove(&self, inner: &mut ShardInner, key: usize) -> Entry {
        let entry = inner.entries.remove(key);
        let live = &mut inner.live[entry.kind().index()];
        *live -= 1;
        if *live == 0 && self.common.watching.load(Ordering::SeqCst) {
            self.common.changed.notify_one();
        }
        entry
    }
}

impl Slot {
    pub(crate) fn kind(&self) -> TaskKind {
        self.kind
    }

    pub(crate) fn common(&self) -> &Common {
        &self.shard.common
    }

    /// Counts and reports a panic of this work, and starts the shutdown under `stop_on_panic`.
    pub(crate) fn panicked(&self) {
        let common = &self.shard.common;
        common.panics.fetch_add(1, Ordering::SeqCst);
        let entry = info(
            &lock(&self.shard.inner).entries[self.key as usize],
            common.now_us(),
        );
        crate::report::panicked(&entry);
        // A panicking hook is reported and the next one runs (SPEC §4): it never stops the program.
        if common.stop_on_panic && self.kind != TaskKind::Hook {
            if let Some(shared) = common.owner.upgrade() {
                let task = if entry.name.is_empty() {
                    Cow::Owned(entry.to_string())
                } else {
                    entry.name.clone()
                };
                shared.panic_stops(task);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = lock(&self.shard.inner);
        let key = self.key as usize;
        if inner.entries[key].state() == State::Pending {
            inner.entries[key].set_state(State::Finished);
            return;
        }
        let entry = self.shard.remove(&mut inner, key);
        drop(inner);
        // The abort handle is released outside the lock: it touches the task's own state.
        drop(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(Weak::new(), false)
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(std::mem::size_of::<slab::Slab<Entry>>(), 40);
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn meta_packs_and_unpacks() {
        let meta = Meta::new(123_456_789, TaskKind::Hook, State::Pending, false);
        assert_eq!(meta.started_us(), 123_456_789);
        assert_eq!(meta.kind(), TaskKind::Hook);
        assert!(meta.state() == State::Pending && !meta.is_main());
        let meta = meta.with_state(State::Finished).with_main();
        assert_eq!(meta.kind(), TaskKind::Hook);
        assert!(meta.state() == State::Finished && meta.is_main());
        assert_eq!(meta.started_us(), 123_456_789);
    }

    #[test]
    fn insert_snapshot_and_remove_on_drop() {
        let registry = registry();
        let (slot, _) = registry.insert(
            TaskKind::Service,
            Some("flusher".into()),
            Location::caller(),
            true,
        );
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].name, "flusher");
        assert_eq!(snapshot[0].kind, TaskKind::Service);
        assert_eq!(registry.count(&[TaskKind::Service]), 1);
        drop(slot);
        assert!(registry.snapshot().is_empty());
        assert_eq!(registry.count(&[TaskKind::Service]), 0);
    }

    #[test]
    fn work_finishing_before_it_is_armed_is_removed_by_the_arming() {
        let registry = registry();
        let (slot, at) = registry.insert(TaskKind::Task, None, Location::caller(), false);
        drop(slot);
        // The key must stay reserved until the spawner arms it, or a new entry could take it.
        assert_eq!(registry.count(&[TaskKind::Task]), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = rt.spawn(async {});
        registry.arm(at, handle.abort_handle());
        assert_eq!(registry.count(&[TaskKind::Task]), 0);
        assert!(registry.snapshot().is_empty());
    }

    #[test]
    fn zero_crossing_notifies_only_while_watching() {
        let registry = registry();
        let (slot, _) = registry.insert(TaskKind::Task, None, Location::caller(), true);
        let mut waiter = tokio_test_notified(&registry.common.changed);
        drop(slot);
        assert!(!waiter.is_ready());

        registry.common.watching.store(true, Ordering::SeqCst);
        let (slot, _) = registry.insert(TaskKind::Task, None, Location::caller(), true);
        let (other, _) = registry.insert(TaskKind::Task, None, Location::caller(), true);
        drop(slot);
        assert!(
            !waiter.is_ready(),
            "one task left: the count is not zero yet"
        );
        drop(other);
        assert!(waiter.is_ready());
    }

    #[test]
    fn abort_all_aborts_armed_work_and_names_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let registry = registry();
        let (slot, at) = registry.insert(
            TaskKind::Service,
            Some("svc".into()),
            Location::caller(),
            false,
        );
        let handle = rt.spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await
        });
        registry.arm(at, handle.abort_handle());
        let (_blocking, _) = registry.insert(
            TaskKind::Blocking,
            Some("job".into()),
            Location::caller(),
            true,
        );
        let aborted = registry.abort_all();
        assert_eq!(
            aborted.len(),
            1,
            "blocking jobs are not aborted: {aborted:?}"
        );
        assert_eq!(aborted[0].name, "svc");
        let err = rt.block_on(handle).unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(registry.count(&[TaskKind::Service]), 0);
        assert!(registry.common.cancels_at_once(TaskKind::Service));
        assert!(!registry.common.cancels_at_once(TaskKind::Blocking));
    }

    /// A `Notify` waiter polled by hand, so the test drives it poll by poll.
    struct Waiter<'a> {
        notified: std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>,
    }

    fn tokio_test_notified(notify: &Notify) -> Waiter<'_> {
        let mut notified = Box::pin(notify.notified());
        notified.as_mut().enable();
        Waiter { notified }
    }

    impl Waiter<'_> {
        fn is_ready(&mut self) -> bool {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            std::future::Future::poll(self.notified.as_mut(), &mut cx).is_ready()
        }
    }
}

/// The arm / finish / cancel protocol, checked in every order its steps can take. Each step runs
/// under the shard lock, so the orders of the steps are all the interleavings there are.
#[cfg(test)]
mod interleavings {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Step {
        /// The spawner stores the abort handle, then checks whether to abort at once.
        Arm,
        /// The task ends and drops its slot.
        Finish,
        /// The sequence's cancel step.
        Cancel,
    }

    fn orders() -> Vec<[Step; 3]> {
        use Step::*;
        vec![
            [Arm, Finish, Cancel],
            [Arm, Cancel, Finish],
            [Finish, Arm, Cancel],
            [Finish, Cancel, Arm],
            [Cancel, Arm, Finish],
            [Cancel, Finish, Arm],
        ]
    }

    #[test]
    fn every_order_removes_the_entry_and_cancels_when_cancel_comes_first() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for order in orders() {
            let registry = Registry::new(Weak::new(), false);
            let task = rt.spawn(std::future::pending::<()>());
            let (slot, at) = registry.insert(TaskKind::Task, None, Location::caller(), false);
            let mut slot = Some(slot);
            for step in order {
                match step {
                    Step::Arm => {
                        registry.arm(at, task.abort_handle());
                        if registry.common.cancels_at_once(TaskKind::Task) {
                            task.abort();
                        }
                    }
                    Step::Finish => drop(slot.take()),
                    Step::Cancel => {
                        registry.cancel_tasks();
                    }
                }
                // A snapshot at any point never shows a finished entry.
                let live = registry.snapshot().len();
                assert!(live <= 1, "{order:?}");
                if slot.is_none() {
                    assert_eq!(live, 0, "a finished task is listed: {order:?}");
                }
            }
            assert_eq!(registry.count(&[TaskKind::Task]), 0, "{order:?}");
            let cancel_first = order.iter().position(|s| *s == Step::Cancel)
                < order.iter().position(|s| *s == Step::Finish);
            rt.block_on(tokio::task::yield_now());
            if cancel_first {
                assert!(
                    task.is_finished(),
                    "the task outlived the cancel step: {order:?}"
                );
            }
        }
    }
}
