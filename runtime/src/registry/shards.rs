//! The concurrent store under the registry: entries in shards, each a slab behind its own mutex.
//!
//! A thread always adds to the same shard, so two threads spawning at once lock different
//! mutexes. Ended work goes back in three stages, so that the spawn path and the completion path
//! do not fight over one lock: the thread the work ended on buries its key in its own [`Grave`];
//! a full grave hands its keys back to their shards' [`Returned`] lists; the shard's own thread
//! removes them the next time it adds (see [`Shards::lock_to_add`]). A count or a listing first
//! flushes all three stages, so what it sees is exact. Once someone waits for counts to fall (a
//! shutdown), an end removes its entry at once if the shard's lock is free, and otherwise still
//! buries it, waking the waiter so that its next count flushes it: two workers ending cancelled
//! work spawned from one thread never queue on that thread's lock. Nothing runs user code while
//! holding a lock here, so a wedged task can never make the store unreadable for the watchdog.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use slab::Slab;
use tokio::sync::Notify;

use super::entry::{Entry, Meta, State};
use crate::task::{TaskInfo, TaskKind, KINDS};

#[repr(align(64))]
struct Shard {
    inner: Mutex<ShardInner>,
    /// A key reserved by the last [`Shards::fill`], so that the next spawn here takes no lock
    /// before tokio's spawn (`NO_SPARE` when there is none).
    spare: AtomicU32,
    returned: Returned,
}

const NO_SPARE: u32 = u32::MAX;

struct ShardInner {
    entries: Slab<Entry>,
    /// Armed entries by kind: `[ungrouped, grouped]`.
    live: [[usize; KINDS]; 2],
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

/// The keys one thread has released, handed back to their shards a batch at a time.
///
/// A task usually ends on another worker than the one that spawned it. Removing its entry there
/// and then would pull the spawner's shard (its lock and its slab) over to the other core and back
/// for every task, and make the two cores fight over the lock. Each thread buries what it
/// releases in its own grave instead, and hands [`BATCH`] keys at a time back to their shards.
#[repr(align(64))]
#[derive(Default)]
struct Grave {
    buried: Mutex<Vec<At>>,
}

pub(super) const BATCH: usize = 64;

/// Handed-back keys a shard holds before the thread handing them back removes them itself: the
/// shard's thread may have stopped spawning, and ended tasks keep their memory until removed.
pub(super) const RETURNED_MAX: usize = 1024;

const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;
const KEY_BITS: u32 = u32::BITS - SHARD_BITS;

/// Where a walk over the store has come to: [`Shards::for_each_armed_from`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Position {
    shard: usize,
    key: usize,
}

impl Position {
    pub(crate) const START: Position = Position { shard: 0, key: 0 };
}

/// Where an entry lives: its shard in the top bits, its slab key below.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct At(u32);

impl At {
    #[inline]
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under our locks; a poisoned lock only means a bug of ours panicked
    // mid-update of plain counters, which is no reason to stop shutting down.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`], unless another thread holds it.
fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

thread_local! {
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard and grave: threads that spawn or release at once use different ones.
#[inline]
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
        // Always below `SHARDS` already; the mask tells the compiler so.
        & (SHARDS - 1)
}

pub(super) struct Shards {
    /// Arrays, not slices: a shard's index is masked below `SHARDS`, so no access checks bounds.
    shards: Box<[Shard; SHARDS]>,
    graves: Box<[Grave; SHARDS]>,
    /// Someone counts: every removal shows at once, and a kind's count reaching zero in a shard
    /// wakes `changed`.
    exact: AtomicBool,
    changed: Notify,
}

impl Shards {
    pub(super) fn new() -> Shards {
        let shards = Box::new(std::array::from_fn(|_| Shard {
            inner: Mutex::new(ShardInner {
                entries: Slab::new(),
                live: [[0; KINDS]; 2],
                reclaiming: Vec::new(),
            }),
            spare: AtomicU32::new(NO_SPARE),
            returned: Returned::default(),
        }));
        let graves = Box::new(std::array::from_fn(|_| Grave::default()));
        Shards {
            shards,
            graves,
            exact: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    pub(super) fn set_exact(&self) {
        self.exact.store(true, Ordering::SeqCst);
    }

    pub(super) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Adds an armed entry in this thread's shard.
    pub(super) fn insert(&self, entry: Entry) -> At {
        let shard = shard_hint();
        let (kind, grouped) = (entry.kind(), entry.meta.is_grouped());
        let mut inner = self.lock_to_add(&self.shards[shard]);
        inner.live[usize::from(grouped)][kind.index()] += 1;
        At::new(shard, inner.entries.insert(entry))
    }

    /// Changes the entry at `at` in place.
    pub(super) fn update<R>(&self, at: At, f: impl FnOnce(&mut Entry) -> R) -> R {
        f(&mut lock(&self.shards[at.shard()].inner).entries[at.key()])
    }

    /// Takes a key in this thread's shard for an entry to be [`fill`](Self::fill)ed in. Usually
    /// takes no lock: the last `fill` left a key spare.
    #[inline(always)]
    pub(super) fn reserve(&self) -> At {
        let index = shard_hint();
        let shard = &self.shards[index];
        let key = match shard.spare.swap(NO_SPARE, Ordering::Acquire) {
            NO_SPARE => lock(&shard.inner).entries.insert(Entry::reserved()),
            key => key as usize,
        };
        At::new(index, key)
    }

    /// Puts `entry` at the reserved key `at`, or removes the reservation if its work has already
    /// ended. Also removes what other threads handed back, and reserves a key for the next
    /// reserve: this is the one lock a spawn takes.
    ///
    /// Returns the work's description if it panicked while reserved, for the caller to report.
    #[inline(always)]
    pub(super) fn fill(&self, at: At, kind: TaskKind, entry: Entry) -> Option<TaskInfo> {
        let shard = &self.shards[at.shard()];
        let mut inner = self.lock_to_add(shard);
        if inner.entries[at.key()].meta != Meta::RESERVED {
            // It ended or panicked while reserved: rare, and out of the way.
            return self.fill_late(shard, inner, at, kind, entry);
        }
        Self::arm(&mut inner, at.key(), kind, entry);
        Self::keep_spare(shard, &mut inner);
        None
    }

    /// Puts `entry` in place of the reservation at `key`, and counts it.
    #[inline(always)]
    fn arm(inner: &mut ShardInner, key: usize, kind: TaskKind, entry: Entry) {
        let grouped = entry.meta.is_grouped();
        // Field by field: moved whole, the entry was read back from the stack in one 16-byte
        // load just after two 8-byte stores, which the CPU cannot forward.
        let Entry {
            abort,
            origin,
            meta,
        } = entry;
        let reserved = &mut inner.entries[key];
        reserved.abort = abort;
        reserved.origin = origin;
        reserved.meta = meta;
        inner.live[usize::from(grouped)][kind.index()] += 1;
    }

    /// [`fill`](Self::fill) for work that ended or panicked before its spawner filled it in.
    #[cold]
    fn fill_late(
        &self,
        shard: &Shard,
        mut inner: MutexGuard<'_, ShardInner>,
        at: At,
        kind: TaskKind,
        entry: Entry,
    ) -> Option<TaskInfo> {
        let reserved = &inner.entries[at.key()];
        let panicked = reserved
            .meta
            .has_panicked()
            .then(|| entry.info(entry.meta.started_us()));
        let ended = if reserved.state() == State::Finished {
            // Never counted: it ended while reserved.
            Some(inner.entries.remove(at.key()))
        } else {
            Self::arm(&mut inner, at.key(), kind, entry);
            None
        };
        Self::keep_spare(shard, &mut inner);
        drop(inner);
        drop(ended);
        panicked
    }

    /// Reserves a key for the next [`reserve`](Self::reserve) on this shard, if none is spare.
    #[inline]
    fn keep_spare(shard: &Shard, inner: &mut ShardInner) {
        // Only `fill`s store a spare, under the lock; a `reserve` only takes it.
        if shard.spare.load(Ordering::Relaxed) == NO_SPARE {
            let key = inner.entries.insert(Entry::reserved());
            if let Ok(key) = u32::try_from(key) {
                shard.spare.store(key, Ordering::Release);
            }
        }
    }

    /// Locks a shard to add to it, first removing what other threads handed back: the thread
    /// adding is the shard's own, which wrote those entries and still has them in its cache.
    #[inline(always)]
    fn lock_to_add<'a>(&self, shard: &'a Shard) -> MutexGuard<'a, ShardInner> {
        let mut inner = lock(&shard.inner);
        if shard.returned.any.load(Ordering::Relaxed) {
            self.reclaim(shard, &mut inner);
        }
        inner
    }

    /// How many armed entries there are of these kinds: ungrouped ones, and grouped ones too if
    /// `grouped`.
    pub(super) fn count(&self, kinds: &[TaskKind], grouped: bool) -> usize {
        self.flush();
        self.shards
            .iter()
            .map(|shard| {
                let inner = lock(&shard.inner);
                let ungrouped: usize = kinds.iter().map(|k| inner.live[0][k.index()]).sum();
                let in_groups: usize = kinds.iter().map(|k| inner.live[1][k.index()]).sum();
                ungrouped + if grouped { in_groups } else { 0 }
            })
            .sum()
    }

    /// Calls `f` on every armed entry, a shard at a time under its lock.
    pub(super) fn for_each_armed(&self, f: impl FnMut(&Entry)) {
        self.for_each_armed_from(Position::START, usize::MAX, f);
    }

    /// Calls `f` on up to `max` armed entries of the store, from the position `from` on, under
    /// one shard's lock at a time; returns where to go on from, or `None` at the end. For work
    /// done a slice at a time, letting go of the locks in between.
    pub(super) fn for_each_armed_from(
        &self,
        from: Position,
        max: usize,
        mut f: impl FnMut(&Entry),
    ) -> Option<Position> {
        if from == Position::START {
            self.flush();
        }
        let Position { mut shard, mut key } = from;
        let mut seen = 0;
        while shard < SHARDS {
            let inner = lock(&self.shards[shard].inner);
            let end = inner.entries.capacity();
            while key < end {
                if seen == max {
                    return Some(Position { shard, key });
                }
                if let Some(entry) = inner.entries.get(key) {
                    if entry.state() == State::Armed {
                        f(entry);
                        seen += 1;
                    }
                }
                key += 1;
            }
            drop(inner);
            shard += 1;
            key = 0;
        }
        None
    }

    /// The work behind `at` has ended.
    ///
    /// On the thread that spawned it, the entry goes at once: that thread's shard is in its
    /// cache, and nobody else takes its lock but a count. The entry's abort handle is then
    /// dropped right away, so tokio frees the task when its `JoinHandle` goes, and the allocator
    /// hands the same memory to the next spawn. Work that ended elsewhere is buried.
    #[inline(always)]
    pub(super) fn release(&self, at: At) {
        let here = shard_hint();
        if at.shard() != here {
            return self.release_away(here, at);
        }
        self.finish_unlocking(lock(&self.shards[here].inner), at.key());
    }

    /// [`release`](Self::release) of work spawned from another thread's shard.
    #[inline(never)]
    fn release_away(&self, here: usize, at: At) {
        if self.exact.load(Ordering::SeqCst) {
            // While someone counts, remove at once, unless another thread holds the shard: then
            // bury instead of queueing behind it. In a shutdown every worker ends cancelled work
            // spawned from the same thread, and waiting turned into a futex sleep per clash.
            if let Some(inner) = try_lock(&self.shards[at.shard()].inner) {
                self.finish_unlocking(inner, at.key());
                return;
            }
        }
        let mut buried = lock(&self.graves[here].buried);
        buried.push(at);
        let exact = self.exact.load(Ordering::SeqCst);
        // Counted exactly, a buried key must not be missed: whoever waits is woken when a grave
        // it may have emptied gets a key again, and when a grave hands its keys on. (A key pushed
        // onto a grave already holding some is covered by the wake of the first: the count after
        // that wake either took this key too or emptied the grave before it.)
        let mut wake = exact && buried.len() == 1;
        if buried.len() >= BATCH {
            self.hand_back(&mut buried);
            wake = exact;
        }
        drop(buried);
        if wake {
            self.changed.notify_one();
        }
    }

    /// Gives buried keys back to their shards, locking each shard's list once.
    fn hand_back(&self, buried: &mut Vec<At>) {
        buried.sort_unstable();
        for run in buried.chunk_by(|a, b| a.shard() == b.shard()) {
            let shard = &self.shards[run[0].shard()];
            let mut keys = lock(&shard.returned.keys);
            keys.extend(run.iter().map(|at| at.key() as u32));
            shard.returned.any.store(true, Ordering::Relaxed);
            let overflowing = keys.len() >= RETURNED_MAX;
            drop(keys);
            // Held by someone else (its spawner, a walk), the shard is being looked after: the
            // keys wait for the next add or count instead of this thread waiting.
            if overflowing {
                if let Some(mut inner) = try_lock(&shard.inner) {
                    self.reclaim(shard, &mut inner);
                }
            }
        }
        buried.clear();
    }

    /// Makes counts and lists exact: every key released so far has its entry removed.
    ///
    /// A release that saw `exact` false buried its key under its grave's lock. After
    /// [`set_exact`](Self::set_exact), this takes each of those locks, so it either finds the key
    /// or the release saw the flag, and then removed the entry itself or woke the waiter.
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

    /// [`finish`](Self::finish) under `inner`, dropping the entry once the lock is let go: its
    /// abort handle may be the task's last reference, and freeing the task is no work for a lock.
    #[inline(always)]
    fn finish_unlocking(&self, mut inner: MutexGuard<'_, ShardInner>, key: usize) {
        // Its two owning fields apart, not the entry whole: held as one value across the unlock,
        // it went through the stack and was read back in one load the CPU could not forward.
        let parts = self.finish(&mut inner, key).map(|entry| {
            let Entry { abort, origin, .. } = entry;
            (abort, origin)
        });
        drop(inner);
        drop(parts);
    }

    /// The work behind the entry has ended: removes the entry, unless the spawner has not filled
    /// it in yet. Then its `fill` removes it, and until then the key stays taken, so no new entry
    /// can be mistaken for it.
    #[inline(always)]
    fn finish(&self, inner: &mut ShardInner, key: usize) -> Option<Entry> {
        let entry = &mut inner.entries[key];
        if entry.state() == State::Reserved {
            entry.set_state(State::Finished);
            return None;
        }
        let entry = inner.entries.remove(key);
        let live = &mut inner.live[usize::from(entry.meta.is_grouped())][entry.kind().index()];
        *live -= 1;
        if *live == 0 && self.exact.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
        Some(entry)
    }
}

#[cfg(test)]
impl Shards {
    /// Entries in the slabs, reserved and ended-but-not-removed ones included.
    pub(super) fn stored(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.inner).entries.len())
            .sum()
    }

    /// The key the next reserve in `at`'s shard takes without a lock, and that shard's lock, to
    /// prove it.
    pub(super) fn spare_and_lock(&self, at: At) -> (Option<usize>, MutexGuard<'_, impl Sized>) {
        let shard = &self.shards[at.shard()];
        let spare = shard.spare.load(Ordering::SeqCst);
        (
            (spare != NO_SPARE).then_some(spare as usize),
            lock(&shard.inner),
        )
    }

    /// Whether the entries at `a` and `b` point to the same origin (a shared label).
    pub(super) fn same_origin(&self, a: At, b: At) -> bool {
        let origin = |at: At| self.update(at, |entry| entry.origin.addr());
        origin(a) == origin(b)
    }

    /// `at`'s shard's lock, held as a count or a spawn there holds it.
    pub(super) fn hold(&self, at: At) -> MutexGuard<'_, impl Sized> {
        lock(&self.shards[at.shard()].inner)
    }

    pub(super) fn key_of(at: At) -> usize {
        at.key()
    }

    pub(super) fn shard_of(at: At) -> usize {
        at.shard()
    }
}

/// The shard of the calling thread.
#[cfg(test)]
pub(super) fn this_thread_shard() -> usize {
    shard_hint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_keeps_shard_and_key_apart() {
        let at = At::new(SHARDS - 1, (1 << KEY_BITS) - 1);
        assert_eq!((at.shard(), at.key()), (SHARDS - 1, (1 << KEY_BITS) - 1));
        let at = At::new(3, 0);
        assert_eq!((at.shard(), at.key()), (3, 0));
    }
}
