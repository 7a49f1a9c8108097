//! The registry: one entry per live piece of tracked work (task, service, protected future,
//! blocking job, running hook) with its kind, name, spawn location and start time.
//!
//! It is a store and nothing more: entries in ([`insert`](Registry::insert),
//! [`reserve`](Registry::reserve) + [`fill`](Registry::fill)), entries out
//! ([`release`](Registry::release)), counts, snapshots, and aborting the entries of some kinds.
//! When to abort which kind, and what a panic means, is decided by the shutdown sequence and the
//! trigger; the registry knows nothing of either. The concurrent machinery is in `shards.rs`, one
//! entry's layout in `entry.rs`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::panic::Location;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::task::{TaskInfo, TaskKind};

pub(crate) mod entry;
mod origin;
mod shards;

use entry::{clock_us, Entry, Meta, State};
use origin::Origin;
pub(crate) use origin::{Label, SharedLabel};
use shards::Shards;
pub(crate) use shards::{At, Position};

thread_local! {
    /// The label this thread made last for work named with a `&'static str`.
    static LAST_NAMED: RefCell<Option<SharedLabel>> = const { RefCell::new(None) };
}

/// The label of ungrouped work named `name` from `location`, shared with the work this thread
/// last named the same way from there.
#[inline]
fn named_label(location: &'static Location<'static>, name: &'static str) -> SharedLabel {
    SharedLabel::reuse(
        &LAST_NAMED,
        |label| label.is_named(location, name),
        || SharedLabel::new(location, Label::named(Cow::Borrowed(name))),
    )
}

/// Which entries an operation acts on, by their group.
pub(crate) type Which<'a> = &'a dyn Fn(Option<&Arc<str>>) -> bool;

/// Every entry.
pub(crate) fn any(_: Option<&Arc<str>>) -> bool {
    true
}

pub(crate) struct Registry {
    shards: Shards,
    epoch_us: u64,
    id: RegistryId,
}

/// Tells the registries alive in one process apart, in two bytes (it is kept in every task).
///
/// Ids are taken from the ones no live registry holds and given back when a registry is dropped,
/// so two live registries never share one, however many runtimes the process has run: a
/// counter would wrap after 65,536 runtimes (a long test suite) and let a task of one runtime
/// touch another's entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RegistryId(u16);

struct Ids {
    next: u32,
    free: Vec<u16>,
}

static IDS: Mutex<Ids> = Mutex::new(Ids {
    next: 0,
    free: Vec::new(),
});

impl RegistryId {
    fn take() -> RegistryId {
        let mut ids = IDS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = ids.free.pop() {
            return RegistryId(id);
        }
        let id = u16::try_from(ids.next)
            .expect("graceful: more than 65,536 graceful runtimes alive at once in one process");
        ids.next += 1;
        RegistryId(id)
    }

    fn give_back(self) {
        let mut ids = IDS.lock().unwrap_or_else(PoisonError::into_inner);
        ids.free.push(self.0);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.id.give_back();
    }
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            shards: Shards::new(),
            epoch_us: clock_us(),
            id: RegistryId::take(),
        }
    }

    #[inline]
    pub(crate) fn id(&self) -> RegistryId {
        self.id
    }

    #[inline]
    fn now_us(&self) -> u64 {
        clock_us().saturating_sub(self.epoch_us)
    }

    /// An armed entry; `grouped` says whether `origin`'s label has a group (known to the caller
    /// without looking through the origin's pointer).
    #[inline]
    fn entry(
        &self,
        kind: TaskKind,
        origin: Origin,
        grouped: bool,
        abort: Option<AbortHandle>,
    ) -> Entry {
        let mut meta = Meta::new(self.now_us(), kind, State::Armed, false);
        if grouped {
            meta = meta.with_grouped();
        }
        Entry {
            abort,
            origin,
            meta,
        }
    }

    /// Adds a live entry for work that has no abort handle (`main`, a blocking job).
    pub(crate) fn insert(
        &self,
        kind: TaskKind,
        label: Label,
        location: &'static Location<'static>,
    ) -> At {
        let grouped = label.group.is_some();
        let origin = Origin::labelled(location, label);
        self.shards.insert(self.entry(kind, origin, grouped, None))
    }

    /// `main` is a service named "main" with no abort handle: the sequence drops it itself.
    pub(crate) fn insert_main(&self, location: &'static Location<'static>) -> At {
        let at = self.insert(TaskKind::Service, Label::named("main".into()), location);
        self.shards
            .update(at, |entry| entry.meta = entry.meta.with_main());
        at
    }

    /// Takes a key for work about to be spawned; it must then be [`fill`](Self::fill)ed in with
    /// the task's abort handle. Until then it is neither counted nor listed.
    #[inline]
    pub(crate) fn reserve(&self) -> At {
        self.shards.reserve()
    }

    /// Makes reserved work live with its abort handle, or removes its entry if it has already
    /// ended. The spawn path of the root's named work (a service): a name, no other label.
    ///
    /// Returns the work's description if it panicked before this (it ran on another worker
    /// first), for the caller to report.
    #[must_use]
    #[inline]
    pub(crate) fn fill(
        &self,
        at: At,
        kind: TaskKind,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        abort: AbortHandle,
    ) -> Option<TaskInfo> {
        let origin = match name {
            // Services and the like are mostly named with a literal: work spawned from one call
            // site with one literal shares one label, as a scope's unnamed work does, instead of
            // a box per piece of work.
            Cow::Borrowed(name) => Origin::shared(named_label(location, name)),
            name => Origin::new(location, Some(name)),
        };
        self.shards
            .fill(at, kind, self.entry(kind, origin, false, Some(abort)))
    }

    /// [`fill`](Self::fill) for unnamed work: the spawn path of `graceful::spawn`.
    #[must_use]
    #[inline]
    pub(crate) fn fill_unnamed(
        &self,
        at: At,
        kind: TaskKind,
        location: &'static Location<'static>,
        abort: AbortHandle,
    ) -> Option<TaskInfo> {
        let origin = Origin::new(location, None);
        self.shards
            .fill(at, kind, self.entry(kind, origin, false, Some(abort)))
    }

    /// [`fill`](Self::fill) with a label shared with other work: what one call site spawns into a
    /// scope.
    #[must_use]
    #[inline(always)]
    pub(crate) fn fill_shared(
        &self,
        at: At,
        kind: TaskKind,
        label: SharedLabel,
        abort: AbortHandle,
    ) -> Option<TaskInfo> {
        let grouped = label.is_grouped();
        let origin = Origin::shared(label);
        self.shards
            .fill(at, kind, self.entry(kind, origin, grouped, Some(abort)))
    }

    /// [`fill`](Self::fill) with a whole label: a scope's work, a supervisor's.
    #[must_use]
    pub(crate) fn fill_labelled(
        &self,
        at: At,
        kind: TaskKind,
        label: Label,
        location: &'static Location<'static>,
        abort: AbortHandle,
    ) -> Option<TaskInfo> {
        let grouped = label.group.is_some();
        let origin = Origin::labelled(location, label);
        self.shards
            .fill(at, kind, self.entry(kind, origin, grouped, Some(abort)))
    }

    /// The work behind `at` has ended. Its entry may stay in the store a little longer (see
    /// `shards.rs`), but no count or listing sees it.
    #[inline(always)]
    pub(crate) fn release(&self, at: At) {
        self.shards.release(at);
    }

    /// The description of the live work at `at`, for a report about it; `None` while its
    /// spawner has not filled the entry in.
    pub(crate) fn describe(&self, at: At) -> Option<TaskInfo> {
        let now = self.now_us();
        self.shards.update(at, |entry| {
            (entry.state() == State::Armed).then(|| entry.info(now))
        })
    }

    /// The work at `at` panicked: its description, or `None` if its spawner has not filled the
    /// entry in yet. Then the entry is marked, and its `fill` returns the description.
    pub(crate) fn mark_panicked(&self, at: At) -> Option<TaskInfo> {
        let now = self.now_us();
        self.shards.update(at, |entry| {
            if entry.state() == State::Reserved {
                entry.meta = entry.meta.with_panicked();
                return None;
            }
            Some(entry.info(now))
        })
    }

    /// From now on, a removal shows at once and a kind's count reaching zero wakes
    /// [`changed`](Self::changed): for whoever waits for counts to fall.
    pub(crate) fn watch(&self) {
        self.shards.set_exact();
    }

    /// Notified when a count may have reached zero, once [`watch`](Self::watch) was called.
    pub(crate) fn changed(&self) -> &Notify {
        self.shards.changed()
    }

    /// How many live ungrouped entries there are of these kinds. (Groups keep their own counts.)
    pub(crate) fn count(&self, kinds: &[TaskKind]) -> usize {
        self.shards.count(kinds, false)
    }

    /// How many live entries there are of these kinds, in groups or not.
    pub(crate) fn count_all(&self, kinds: &[TaskKind]) -> usize {
        self.shards.count(kinds, true)
    }

    /// What is alive now, in spawn order within a shard.
    pub(crate) fn snapshot(&self) -> Vec<TaskInfo> {
        self.snapshot_of(&any)
    }

    /// What is alive now of the groups `which` picks.
    pub(crate) fn snapshot_of(&self, which: Which<'_>) -> Vec<TaskInfo> {
        let now = self.now_us();
        let mut out = Vec::new();
        self.shards.for_each_armed(|entry| {
            if which(entry.origin.group()) {
                out.push(entry.info(now));
            }
        });
        out
    }

    /// Aborts the live work of these kinds in the groups `which` picks, up to `max` entries from
    /// `from` on: how many it aborted, and where to go on from (`None`: done). Work without an
    /// abort handle (`main`) is counted, and is for the caller to drop. Between two slices nothing is locked, so
    /// the work aborted so far can end and leave meanwhile.
    pub(crate) fn abort_slice(
        &self,
        kinds: &[TaskKind],
        which: Which<'_>,
        from: Position,
        max: usize,
    ) -> (usize, Option<Position>) {
        let mut count = 0;
        let next = self.abort_each(kinds, which, from, max, |_| count += 1);
        (count, next)
    }

    /// Aborts as [`abort`](Self::abort) does, and describes what it aborted.
    pub(crate) fn abort_listing(&self, kinds: &[TaskKind], which: Which<'_>) -> Vec<TaskInfo> {
        let now = self.now_us();
        let mut aborted = Vec::new();
        self.abort_each(kinds, which, Position::START, usize::MAX, |entry| {
            aborted.push(entry.info(now))
        });
        aborted
    }

    /// The tokio task ids of up to `max` live pieces of work of `kinds` in the groups `which`
    /// picks, in the order [`abort_listing`](Self::abort_listing) names them.
    pub(crate) fn task_ids(
        &self,
        kinds: &[TaskKind],
        which: Which<'_>,
        max: usize,
    ) -> Vec<tokio::task::Id> {
        let mut ids = Vec::new();
        self.shards.for_each_armed(|entry| {
            if ids.len() < max && kinds.contains(&entry.kind()) && which(entry.origin.group()) {
                ids.extend(entry.abort.as_ref().map(AbortHandle::id));
            }
        });
        ids
    }

    fn abort_each(
        &self,
        kinds: &[TaskKind],
        which: Which<'_>,
        from: Position,
        max: usize,
        mut seen: impl FnMut(&Entry),
    ) -> Option<Position> {
        self.shards.for_each_armed_from(from, max, |entry| {
            if !kinds.contains(&entry.kind()) || !which(entry.origin.group()) {
                return;
            }
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
            seen(entry);
        })
    }
}

#[cfg(test)]
mod tests;
