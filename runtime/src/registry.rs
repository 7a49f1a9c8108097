//! The registry of tracked work: one entry per live task, service, protected future, blocking job
//! and running hook, with its kind, name, spawn location and start time.
//!
//! The registry is split into shards, each behind its own mutex, and a thread always inserts into
//! the same shard: two threads spawning at once lock different mutexes. Ended work is removed in
//! batches by the thread it ended on (see [`Grave`]), so the spawn path and the completion path
//! do not fight over one lock. Nothing runs user code while holding a lock of the registry, so a
//! wedged task can never make it unreadable for the watchdog or the forced-exit report.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::context::{self, Shared};

mod origin;

use origin::Origin;

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

impl TaskInfo {
    /// Work that is described, not listed from the registry (its age is not known).
    fn described(
        name: Cow<'static, str>,
        kind: TaskKind,
        location: &'static Location<'static>,
        is_main: bool,
    ) -> TaskInfo {
        TaskInfo {
            name,
            kind,
            location,
            age: Duration::ZERO,
            is_main,
        }
    }

    /// `main`, run at `location`.
    pub(crate) fn main(location: &'static Location<'static>) -> TaskInfo {
        TaskInfo::described(Cow::Borrowed("main"), TaskKind::Service, location, true)
    }

    /// A hook, by where it was registered.
    pub(crate) fn hook(location: &'static Location<'static>) -> TaskInfo {
        TaskInfo::described(Cow::Borrowed(""), TaskKind::Hook, location, false)
    }

    /// A service described by its name and spawn location, as the report names it.
    pub(crate) fn service(
        name: Cow<'static, str>,
        location: &'static Location<'static>,
    ) -> TaskInfo {
        TaskInfo::described(name, TaskKind::Service, location, false)
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
    /// A key taken for work about to be spawned, whose abort handle does not exist yet: not
    /// counted, not listed.
    Reserved,
    Armed,
    /// The work ended before its spawner filled the entry in: the spawner removes it.
    Finished,
}

/// 24 bytes: one is kept per live task, and a tracked task may cost at most 64 bytes over a bare one.
struct Entry {
    abort: Option<AbortHandle>,
    origin: Origin,
    meta: Meta,
}

/// Start time (microseconds since the registry's epoch: 2^56 µs is two thousand years), kind,
/// state and the `main` flag, in one word.
#[derive(Clone, Copy)]
struct Meta(u64);

impl Meta {
    fn new(started_us: u64, kind: TaskKind, state: State, is_main: bool) -> Meta {
        let state = match state {
            State::Reserved => 0,
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
            0 => State::Reserved,
            1 => State::Armed,
            _ => State::Finished,
        }
    }

    fn is_main(self) -> bool {
        self.0 & (1 << 5) != 0
    }

    fn with_state(self, state: State) -> Meta {
        let new = Meta::new(0, TaskKind::Task, state, false).0;
        Meta(self.0 & !(0b11 << 3) | new)
    }

    fn with_main(self) -> Meta {
        Meta(self.0 | 1 << 5)
    }

    /// Reserved work panicked before its spawner filled the entry in: `fill` reports it.
    fn has_panicked(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    fn with_panicked(self) -> Meta {
        Meta(self.0 | 1 << 6)
    }
}

impl Entry {
    fn reserved() -> Entry {
        Entry {
            abort: None,
            origin: Origin::new(Location::caller(), None),
            meta: Meta::new(0, TaskKind::Task, State::Reserved, false),
        }
    }

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

/// Flags and counters the whole registry shares.
pub(crate) struct Common {
    /// Signalled when a shard's count of some kind falls to zero while `watching`.
    pub(crate) changed: Notify,
    /// A shutdown runs: every removal must show at once, since the sequence counts what is left.
    pub(crate) watching: AtomicBool,
    /// Step 2 has begun: `spawn` tasks are cancelled before their first poll.
    pub(crate) cancelling: AtomicBool,
    /// Step 5 has begun: all async work is aborted before its first poll.
    pub(crate) aborting: AtomicBool,
    pub(crate) panics: AtomicUsize,
    epoch_us: u64,
}

impl Common {
    fn now_us(&self) -> u64 {
        clock_us().saturating_sub(self.epoch_us)
    }

    pub(crate) fn cancels_at_once(&self, kind: TaskKind) -> bool {
        (kind == TaskKind::Task && self.cancelling.load(Ordering::SeqCst))
            || (kind != TaskKind::Blocking && self.aborting.load(Ordering::SeqCst))
    }
}

#[repr(align(64))]
struct Shard {
    inner: Mutex<ShardInner>,
    /// A key reserved by the last [`Registry::fill`], so that the next spawn here takes no lock
    /// before tokio's spawn (`NO_SPARE` when there is none).
    spare: AtomicU32,
    returned: Returned,
}

const NO_SPARE: u32 = u32::MAX;

struct ShardInner {
    entries: Slab<Entry>,
    live: [usize; KINDS],
    /// The buffer `returned` swaps with, kept for its capacity.
    reclaiming: Vec<u32>,
}

/// Keys of a shard's ended work, handed back by the threads it ended on.
///
/// The shard's own thread removes them the next time it spawns: it holds the shard's lock then
/// anyway, and the entries it wrote are still in its cache. Another thread removing them would
/// hold that lock through a cache miss per entry while the spawner queues behind it.
#[repr(align(64))]
#[derive(Default)]
struct Returned {
    keys: Mutex<Vec<u32>>,
    /// Whether `keys` has any: read on every spawn without taking the lock.
    any: AtomicBool,
}

/// The slots one thread has released, handed back to their shards a batch at a time.
///
/// A task usually ends on another worker than the one that spawned it. Removing its entry there
/// and then would pull the spawner's shard (its lock and its slab) over to the other core and back
/// for every task, and make the two cores fight over the lock. Each thread buries what it
/// releases in its own grave instead, and hands [`BATCH`] slots at a time back to their shards.
#[repr(align(64))]
#[derive(Default)]
struct Grave {
    buried: Mutex<Vec<At>>,
}

const BATCH: usize = 64;

/// Handed-back keys a shard holds before the thread handing them back removes them itself: the
/// shard's thread may have stopped spawning, and ended tasks keep their memory until removed.
const RETURNED_MAX: usize = 1024;

const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;
const KEY_BITS: u32 = u32::BITS - SHARD_BITS;

pub(crate) struct Registry {
    shards: Box<[Shard]>,
    graves: Box<[Grave]>,
    pub(crate) common: Common,
    /// Tells this registry's slots from those of another runtime in the same process.
    tag: u16,
}

/// Where an entry lives: its shard in the top bits, its slab key below.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct At(u32);

impl At {
    fn new(shard: usize, key: usize) -> At {
        let key = u32::try_from(key)
            .ok()
            .filter(|key| key >> KEY_BITS == 0)
            .expect("graceful: more than 134 million live tasks spawned from one thread");
        At((shard as u32) << KEY_BITS | key)
    }

    fn shard(self) -> usize {
        (self.0 >> KEY_BITS) as usize
    }

    fn key(self) -> usize {
        (self.0 & ((1 << KEY_BITS) - 1)) as usize
    }
}

/// Owned by the tracked work; its entry goes when it is dropped (completion, cancellation, panic).
///
/// Eight bytes in every tracked task, and no pointer: the registry is found through the thread,
/// because only the runtime's own threads drop its work. Tokio drops a task's future on a worker
/// (or, once the runtime has shut down, on the thread that spawns it), and blocking jobs end on
/// the runtime's blocking threads. An `Arc` here would bounce its counter between the spawning
/// core and the completing one on every task.
pub(crate) struct Slot {
    at: At,
    tag: u16,
    kind: TaskKind,
    pub(crate) progress: Progress,
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

/// Microseconds on a monotonic clock, for ages; every spawn reads it.
///
/// On Linux this is the coarse clock: a few nanoseconds instead of the twenty `Instant::now()`
/// costs here (a tenth of graceful's whole spawn overhead in `benches/spawn.rs`), at the
/// resolution of a scheduler tick (1 to 4 ms), which ages shown in milliseconds do not notice.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn clock_us() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to write; the clock id is a constant the
    // kernel has supported since Linux 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn clock_us() -> u64 {
    use std::time::Instant;
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under our locks; a poisoned lock only means a bug of ours panicked
    // mid-update of plain counters, which is no reason to stop shutting down.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard and grave: threads that spawn or release at once use different ones.
fn shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD_HINT
        .try_with(|hint| {
            let mut value = hint.get();
            if value == usize::MAX {
                value = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                hint.set(value);
            }
            value
        })
        .unwrap_or(0)
}

impl Registry {
    pub(crate) fn new() -> Registry {
        static TAGS: AtomicU16 = AtomicU16::new(0);
        let shards = (0..SHARDS)
            .map(|_| Shard {
                inner: Mutex::new(ShardInner {
                    entries: Slab::new(),
                    live: [0; KINDS],
                    reclaiming: Vec::new(),
                }),
                spare: AtomicU32::new(NO_SPARE),
                returned: Returned::default(),
            })
            .collect();
        let graves = (0..SHARDS).map(|_| Grave::default()).collect();
        Registry {
            shards,
            graves,
            common: Common {
                changed: Notify::new(),
                watching: AtomicBool::new(false),
                cancelling: AtomicBool::new(false),
                aborting: AtomicBool::new(false),
                panics: AtomicUsize::new(0),
                epoch_us: clock_us(),
            },
            tag: TAGS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Adds a live entry for work that has no abort handle (`main`, a blocking job).
    pub(crate) fn insert(
        &self,
        kind: TaskKind,
        name: Option<Cow<'static, str>>,
        location: &'static Location<'static>,
    ) -> Slot {
        let shard = shard_hint();
        let entry = Entry {
            abort: None,
            origin: Origin::new(location, name),
            meta: Meta::new(self.common.now_us(), kind, State::Armed, false),
        };
        let key = {
            let mut inner = self.lock_to_add(&self.shards[shard]);
            inner.live[kind.index()] += 1;
            inner.entries.insert(entry)
        };
        self.slot(At::new(shard, key), kind)
    }

    /// `main` is a service named "main" with no abort handle: the sequence drops it itself.
    pub(crate) fn insert_main(&self, location: &'static Location<'static>) -> Slot {
        let slot = self.insert(TaskKind::Service, Some("main".into()), location);
        let entries = &mut lock(&self.shards[slot.at.shard()].inner).entries;
        let entry = &mut entries[slot.at.key()];
        entry.meta = entry.meta.with_main();
        slot
    }

    /// Takes a key for work about to be spawned; it must then be [`fill`](Self::fill)ed in with
    /// the task's abort handle. Usually takes no lock: the last `fill` left a key spare.
    pub(crate) fn reserve(&self, kind: TaskKind) -> Slot {
        let index = shard_hint();
        let shard = &self.shards[index];
        let key = match shard.spare.swap(NO_SPARE, Ordering::Acquire) {
            NO_SPARE => lock(&shard.inner).entries.insert(Entry::reserved()),
            key => key as usize,
        };
        self.slot(At::new(index, key), kind)
    }

    /// Makes reserved work live with its abort handle, or removes its entry if it has already
    /// ended. Also removes what other threads handed back, and reserves a key for the next spawn:
    /// this is the one lock a spawn takes.
    ///
    /// Returns the work's description if it panicked before this, for the caller to report.
    #[must_use]
    pub(crate) fn fill(
        &self,
        at: At,
        kind: TaskKind,
        name: Option<Cow<'static, str>>,
        location: &'static Location<'static>,
        abort: AbortHandle,
    ) -> Option<TaskInfo> {
        let shard = &self.shards[at.shard()];
        let entry = Entry {
            abort: Some(abort),
            origin: Origin::new(location, name),
            meta: Meta::new(self.common.now_us(), kind, State::Armed, false),
        };
        let mut inner = self.lock_to_add(shard);
        let reserved = &inner.entries[at.key()];
        let panicked = reserved
            .meta
            .has_panicked()
            .then(|| info(&entry, entry.meta.started_us()));
        let ended = if reserved.state() == State::Finished {
            // Never counted: it ended while reserved.
            Some(inner.entries.remove(at.key()))
        } else {
            inner.entries[at.key()] = entry;
            inner.live[kind.index()] += 1;
            None
        };
        // Only `fill`s store a spare, under the lock; a `reserve` only takes it.
        if shard.spare.load(Ordering::Relaxed) == NO_SPARE {
            let key = inner.entries.insert(Entry::reserved());
            if let Ok(key) = u32::try_from(key) {
                shard.spare.store(key, Ordering::Release);
            }
        }
        drop(inner);
        drop(ended);
        panicked
    }

    /// Locks a shard to add to it, first removing what other threads handed back: the thread
    /// adding is the shard's own, which wrote those entries and still has them in its cache.
    fn lock_to_add<'a>(&self, shard: &'a Shard) -> MutexGuard<'a, ShardInner> {
        let mut inner = lock(&shard.inner);
        if shard.returned.any.load(Ordering::Relaxed) {
            self.reclaim(shard, &mut inner);
        }
        inner
    }

    fn slot(&self, at: At, kind: TaskKind) -> Slot {
        Slot {
            at,
            tag: self.tag,
            kind,
            progress: Progress::Fresh,
        }
    }

    /// How many live entries there are of these kinds.
    pub(crate) fn count(&self, kinds: &[TaskKind]) -> usize {
        self.flush();
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
        self.flush();
        let mut count = 0;
        for shard in self.shards.iter() {
            let inner = lock(&shard.inner);
            for (_, entry) in inner.entries.iter() {
                if entry.state() != State::Armed || !which(entry.kind()) {
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
        self.flush();
        let now = self.common.now_us();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let inner = lock(&shard.inner);
            out.extend(
                inner
                    .entries
                    .iter()
                    .filter(|(_, e)| e.state() == State::Armed)
                    .map(|(_, e)| info(e, now)),
            );
        }
        out
    }

    /// The work at `at` panicked: what to report, or `None` if its spawner has not filled the
    /// entry in yet (the task ran on another worker first). Its `fill` then returns the report.
    fn panicked_at(&self, at: At) -> Option<TaskInfo> {
        let mut inner = lock(&self.shards[at.shard()].inner);
        let entry = &mut inner.entries[at.key()];
        if entry.state() == State::Reserved {
            entry.meta = entry.meta.with_panicked();
            return None;
        }
        Some(info(entry, self.common.now_us()))
    }

    /// The work behind `at` has ended (the slot's drop).
    fn release(&self, at: At) {
        let mut buried = lock(&self.graves[shard_hint()].buried);
        if !self.common.watching.load(Ordering::SeqCst) {
            buried.push(at);
            if buried.len() >= BATCH {
                self.hand_back(&mut buried);
            }
            return;
        }
        drop(buried);
        let mut inner = lock(&self.shards[at.shard()].inner);
        let entry = self.finish(&mut inner, at.key());
        drop(inner);
        drop(entry);
    }

    /// Gives buried slots back to their shards, locking each shard's list once.
    fn hand_back(&self, buried: &mut Vec<At>) {
        buried.sort_unstable();
        for run in buried.chunk_by(|a, b| a.shard() == b.shard()) {
            let shard = &self.shards[run[0].shard()];
            let mut keys = lock(&shard.returned.keys);
            keys.extend(run.iter().map(|at| at.key() as u32));
            shard.returned.any.store(true, Ordering::Relaxed);
            let overflowing = keys.len() >= RETURNED_MAX;
            drop(keys);
            if overflowing {
                self.reclaim(shard, &mut lock(&shard.inner));
            }
        }
        buried.clear();
    }

    /// Makes counts and lists exact: every slot released so far has its entry removed.
    ///
    /// A release that saw `watching` false buried its slot under its grave's lock. After a
    /// shutdown has set `watching`, this takes each of those locks, so it either finds the slot or
    /// the release saw the flag and removed the entry itself.
    fn flush(&self) {
        for grave in self.graves.iter() {
            let mut buried = lock(&grave.buried);
            if !buried.is_empty() {
                self.hand_back(&mut buried);
            }
        }
        for shard in self.shards.iter() {
            if shard.returned.any.load(Ordering::Relaxed) {
                self.reclaim(shard, &mut lock(&shard.inner));
            }
        }
    }

    /// Removes the entries handed back to `shard`, whose lock `inner` is.
    ///
    /// Their abort handles are dropped under the lock, which can free their tasks: outside a
    /// count or a flush, only the shard's own spawner takes this lock, so nobody waits for it.
    fn reclaim(&self, shard: &Shard, inner: &mut ShardInner) {
        let mut keys = std::mem::take(&mut inner.reclaiming);
        {
            let mut returned = lock(&shard.returned.keys);
            shard.returned.any.store(false, Ordering::Relaxed);
            std::mem::swap(&mut *returned, &mut keys);
        }
        for &key in &keys {
            drop(self.finish(inner, key as usize));
        }
        keys.clear();
        inner.reclaiming = keys;
    }

    /// The work behind the entry has ended: removes the entry, unless the spawner has not filled
    /// it in yet. Then its `fill` removes it, and until then the key stays taken, so no new entry
    /// can be mistaken for it.
    fn finish(&self, inner: &mut ShardInner, key: usize) -> Option<Entry> {
        let entry = &mut inner.entries[key];
        if entry.state() == State::Reserved {
            entry.set_state(State::Finished);
            return None;
        }
        Some(self.remove(inner, key))
    }

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

fn info(entry: &Entry, now_us: u64) -> TaskInfo {
    TaskInfo {
        name: entry.origin.name().cloned().unwrap_or(Cow::Borrowed("")),
        kind: entry.kind(),
        location: entry.origin.location(),
        age: Duration::from_micros(now_us.saturating_sub(entry.meta.started_us())),
        is_main: entry.meta.is_main(),
    }
}

impl Slot {
    pub(crate) fn at(&self) -> At {
        self.at
    }

    /// Runs `f` with the runtime this slot's work belongs to: the one of the thread it runs on.
    fn with_runtime<R>(&self, f: impl FnOnce(&Arc<Shared>) -> R) -> Option<R> {
        context::with(|shared| shared.filter(|s| s.registry.tag == self.tag).map(f))
    }

    /// Whether the work must not start: see [`Common::cancels_at_once`].
    pub(crate) fn cancels_at_once(&self) -> bool {
        self.with_runtime(|shared| shared.registry.common.cancels_at_once(self.kind))
            .unwrap_or(false)
    }

    /// Counts and reports a panic of this work, and starts the shutdown under `stop_on_panic`.
    pub(crate) fn panicked(&mut self) {
        self.progress = Progress::Panicked;
        self.with_runtime(|shared| {
            shared.registry.common.panics.fetch_add(1, Ordering::SeqCst);
            if let Some(info) = shared.registry.panicked_at(self.at) {
                shared.task_panicked(&info);
            }
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The slot is dropped after the future it tracks (see `Tracked`): unwinding here means
        // that future panicked while being dropped — a `Drop` in cancelled work. tokio catches
        // it; it must still be reported and counted like any panic of tracked work.
        if std::thread::panicking() && self.progress != Progress::Panicked {
            self.panicked();
        }
        self.with_runtime(|shared| shared.registry.release(self.at));
    }
}

/// Fills reserved work in as a spawn does, for work that has not panicked.
#[cfg(test)]
impl Registry {
    fn fill_for_test(
        &self,
        at: At,
        kind: TaskKind,
        name: Option<&'static str>,
        abort: AbortHandle,
    ) {
        let panicked = self.fill(at, kind, name.map(Cow::Borrowed), Location::caller(), abort);
        assert!(panicked.is_none(), "no panic to report");
    }
}

/// A runtime whose tasks give the unit tests real abort handles.
#[cfg(test)]
fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        assert_eq!(std::mem::size_of::<slab::Slab<Entry>>(), 40);
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    #[test]
    fn at_keeps_shard_and_key_apart() {
        let at = At::new(SHARDS - 1, (1 << KEY_BITS) - 1);
        assert_eq!((at.shard(), at.key()), (SHARDS - 1, (1 << KEY_BITS) - 1));
        let at = At::new(3, 0);
        assert_eq!((at.shard(), at.key()), (3, 0));
    }

    #[test]
    fn meta_packs_and_unpacks() {
        let meta = Meta::new(123_456_789, TaskKind::Hook, State::Reserved, false);
        assert_eq!(meta.started_us(), 123_456_789);
        assert_eq!(meta.kind(), TaskKind::Hook);
        assert!(meta.state() == State::Reserved && !meta.is_main());
        let meta = meta.with_panicked().with_main().with_state(State::Finished);
        assert_eq!(meta.kind(), TaskKind::Hook);
        assert!(meta.state() == State::Finished && meta.is_main() && meta.has_panicked());
        assert_eq!(meta.started_us(), 123_456_789);
    }

    #[test]
    fn insert_snapshot_and_remove_on_drop() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let slot = registry.insert(
            TaskKind::Service,
            Some("flusher".into()),
            Location::caller(),
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
    fn work_ending_before_its_entry_is_filled_is_removed_by_the_filling() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let slot = registry.reserve(TaskKind::Task);
        let at = slot.at();
        drop(slot);
        assert_eq!(registry.count(&[TaskKind::Task]), 0);
        // The key stays taken until the spawner fills it in, or a new entry could be mistaken
        // for the ended one.
        let other = registry.insert(TaskKind::Service, None, Location::caller());
        assert!(other.at() != at);
        let rt = test_runtime();
        let handle = rt.spawn(async {});
        registry.fill_for_test(at, TaskKind::Task, None, handle.abort_handle());
        assert_eq!(registry.count(&[TaskKind::Task]), 0);
        let listed = registry.snapshot();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].kind, TaskKind::Service);
    }

    #[test]
    fn a_panic_before_the_fill_is_reported_by_the_fill_with_where_it_was_spawned() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let rt = test_runtime();
        let slot = registry.reserve(TaskKind::Service);
        let at = slot.at();
        assert!(registry.panicked_at(at).is_none(), "nothing to say yet");
        drop(slot);
        let handle = rt.spawn(async {});
        let here = Location::caller();
        let info = registry
            .fill(
                at,
                TaskKind::Service,
                Some("svc".into()),
                here,
                handle.abort_handle(),
            )
            .expect("the fill reports the panic");
        assert_eq!((info.name.as_ref(), info.kind), ("svc", TaskKind::Service));
        assert_eq!(info.location, here);
        assert_eq!(registry.count(&[TaskKind::Service]), 0);
    }

    #[test]
    fn a_fill_leaves_a_key_spare_so_the_next_reserve_takes_no_lock() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let rt = test_runtime();
        let first = registry.reserve(TaskKind::Task);
        let handle = rt.spawn(async {});
        registry.fill_for_test(first.at(), TaskKind::Task, None, handle.abort_handle());
        let shard = &registry.shards[first.at().shard()];
        let spare = shard.spare.load(Ordering::SeqCst);
        assert_ne!(spare, NO_SPARE);
        // Holding the lock proves the reserve does not take it: it would deadlock.
        let guard = lock(&shard.inner);
        let second = registry.reserve(TaskKind::Task);
        drop(guard);
        assert_eq!(second.at().key(), spare as usize);
        assert_eq!(shard.spare.load(Ordering::SeqCst), NO_SPARE);
        // Reserved but not filled in: neither counted nor listed.
        assert_eq!(registry.count(&[TaskKind::Task]), 1);
        assert_eq!(registry.snapshot().len(), 1);
    }

    #[test]
    fn zero_crossing_notifies_only_while_watching() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let slot = registry.insert(TaskKind::Task, None, Location::caller());
        let mut waiter = tokio_test_notified(&registry.common.changed);
        drop(slot);
        assert_eq!(registry.count(&[TaskKind::Task]), 0);
        assert!(!waiter.is_ready());

        registry.common.watching.store(true, Ordering::SeqCst);
        let slot = registry.insert(TaskKind::Task, None, Location::caller());
        let other = registry.insert(TaskKind::Task, None, Location::caller());
        drop(slot);
        assert!(
            !waiter.is_ready(),
            "one task left: the count is not zero yet"
        );
        drop(other);
        assert!(waiter.is_ready());
    }

    #[test]
    fn released_slots_wait_in_their_grave_until_a_batch_or_a_count() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let live = |registry: &Registry| -> usize {
            registry
                .shards
                .iter()
                .map(|s| lock(&s.inner).entries.len())
                .sum()
        };
        let slots: Vec<Slot> = (0..BATCH)
            .map(|_| registry.insert(TaskKind::Task, None, Location::caller()))
            .collect();
        let mut slots = slots.into_iter();
        slots.by_ref().take(BATCH - 1).for_each(drop);
        assert_eq!(live(registry), BATCH, "removals wait for a full batch");
        drop(slots.next());
        // The batch went back to the shard; its own spawner removes it on its next insert.
        let next = registry.insert(TaskKind::Task, None, Location::caller());
        assert_eq!(live(registry), 1);
        drop(next);
        assert_eq!(live(registry), 1);
        // Counting, as the sequence does, makes everything released so far disappear.
        assert_eq!(registry.count(&[TaskKind::Task]), 0);
        assert_eq!(live(registry), 0);
    }

    #[test]
    fn a_shard_that_stops_spawning_gets_its_ended_work_removed_anyway() {
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let slots: Vec<Slot> = (0..RETURNED_MAX)
            .map(|_| registry.insert(TaskKind::Task, None, Location::caller()))
            .collect();
        // Released on another thread, as tasks end on another worker; no insert follows.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _enter = context::enter(shared.clone());
                drop(slots);
            });
        });
        let entries: usize = registry
            .shards
            .iter()
            .map(|s| lock(&s.inner).entries.len())
            .sum();
        assert_eq!(entries, 0);
    }

    #[test]
    fn abort_all_aborts_armed_work_and_names_it() {
        let rt = test_runtime();
        let (shared, _enter) = context::enter_for_test();
        let registry = &shared.registry;
        let slot = registry.reserve(TaskKind::Service);
        let at = slot.at();
        let handle = rt.spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await
        });
        registry.fill_for_test(at, TaskKind::Service, Some("svc"), handle.abort_handle());
        let _blocking = registry.insert(TaskKind::Blocking, Some("job".into()), Location::caller());
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

/// The fill / finish / cancel protocol of reserved work, checked in every order its steps can
/// take. Each step runs under the shard lock, so the orders of the steps are all the
/// interleavings there are.
#[cfg(test)]
mod interleavings {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Step {
        /// The spawner fills the entry in with the abort handle, then checks whether to abort at
        /// once.
        Fill,
        /// The task ends and drops its slot.
        Finish,
        /// The sequence's cancel step.
        Cancel,
    }

    fn orders() -> Vec<[Step; 3]> {
        use Step::*;
        vec![
            [Fill, Finish, Cancel],
            [Fill, Cancel, Finish],
            [Finish, Fill, Cancel],
            [Finish, Cancel, Fill],
            [Cancel, Fill, Finish],
            [Cancel, Finish, Fill],
        ]
    }

    #[test]
    fn every_order_removes_the_entry_and_cancels_when_cancel_comes_first() {
        let rt = test_runtime();
        for order in orders() {
            let (shared, _enter) = context::enter_for_test();
            let registry = &shared.registry;
            let task = rt.spawn(std::future::pending::<()>());
            let slot = registry.reserve(TaskKind::Task);
            let at = slot.at();
            let mut slot = Some(slot);
            for step in order {
                match step {
                    Step::Fill => {
                        registry.fill_for_test(at, TaskKind::Task, None, task.abort_handle());
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
