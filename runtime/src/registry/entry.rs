//! One registry entry: the abort handle, where the work came from, and its start time, kind and
//! state packed in one word.

use std::borrow::Cow;
use std::panic::Location;
use std::time::Duration;

use tokio::task::AbortHandle;

use super::origin::Origin;
use crate::task::{TaskInfo, TaskKind};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    /// A key taken for work about to be spawned, whose abort handle does not exist yet: not
    /// counted, not listed.
    Reserved,
    Armed,
    /// The work ended before its spawner filled the entry in: the spawner removes it.
    Finished,
}

/// 24 bytes: one is kept per live task, and a tracked task may cost at most 48 bytes over a bare
/// one.
pub(super) struct Entry {
    pub(super) abort: Option<AbortHandle>,
    pub(super) origin: Origin,
    pub(super) meta: Meta,
}

/// Start time (microseconds since the registry's epoch: 2^56 µs is two thousand years), kind,
/// state, the `main` flag and the panicked flag, in one word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta(u64);

impl Meta {
    /// A reserved entry's, untouched: anything else is a reservation whose work ended or
    /// panicked.
    pub(super) const RESERVED: Meta = Meta(0);

    pub(super) fn new(started_us: u64, kind: TaskKind, state: State, is_main: bool) -> Meta {
        let state = match state {
            State::Reserved => 0,
            State::Armed => 1,
            State::Finished => 2,
        };
        let flags = kind.index() as u64 | state << 3 | u64::from(is_main) << 5;
        Meta(started_us << 8 | flags)
    }

    /// In a group: counted apart from ungrouped work (see `Registry::count`).
    pub(super) fn is_grouped(self) -> bool {
        self.0 & (1 << 7) != 0
    }

    pub(super) fn with_grouped(self) -> Meta {
        Meta(self.0 | 1 << 7)
    }

    pub(super) fn started_us(self) -> u64 {
        self.0 >> 8
    }

    pub(super) fn kind(self) -> TaskKind {
        TaskKind::from_index((self.0 & 0b111) as usize)
    }

    pub(super) fn state(self) -> State {
        match (self.0 >> 3) & 0b11 {
            0 => State::Reserved,
            1 => State::Armed,
            _ => State::Finished,
        }
    }

    pub(super) fn is_main(self) -> bool {
        self.0 & (1 << 5) != 0
    }

    pub(super) fn with_state(self, state: State) -> Meta {
        let new = Meta::new(0, TaskKind::Cancellable, state, false).0;
        Meta(self.0 & !(0b11 << 3) | new)
    }

    pub(super) fn with_main(self) -> Meta {
        Meta(self.0 | 1 << 5)
    }

    /// Reserved work panicked before its spawner filled the entry in: the fill says so.
    pub(super) fn has_panicked(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    pub(super) fn with_panicked(self) -> Meta {
        Meta(self.0 | 1 << 6)
    }
}

impl Entry {
    #[inline]
    pub(super) fn reserved() -> Entry {
        Entry {
            abort: None,
            origin: Origin::new(Location::caller(), None),
            meta: Meta::RESERVED,
        }
    }

    pub(super) fn kind(&self) -> TaskKind {
        self.meta.kind()
    }

    pub(super) fn state(&self) -> State {
        self.meta.state()
    }

    pub(super) fn set_state(&mut self, state: State) {
        self.meta = self.meta.with_state(state);
    }

    /// The public description, aged at `now_us`.
    pub(super) fn info(&self, now_us: u64) -> TaskInfo {
        let mut info = TaskInfo::listed(
            self.origin.name().cloned().unwrap_or(Cow::Borrowed("")),
            self.kind(),
            self.origin.location(),
            Duration::from_micros(now_us.saturating_sub(self.meta.started_us())),
            self.meta.is_main(),
        );
        info.scope = self.origin.group().cloned();
        info.restarts = self.origin.restarts();
        info.task_id = self.abort.as_ref().map(AbortHandle::id);
        info.supervised = self.origin.is_supervised();
        info
    }
}

/// Microseconds on a monotonic clock, for ages; every spawn reads it.
///
/// On Linux this is the coarse clock: a few nanoseconds instead of the twenty `Instant::now()`
/// costs here (a tenth of graceful's whole spawn overhead in `benches/spawn.rs`), at the
/// resolution of a scheduler tick (1 to 4 ms), which ages shown in milliseconds do not notice.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub(crate) fn clock_us() -> u64 {
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
pub(crate) fn clock_us() -> u64 {
    use std::time::Instant;
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_packs_and_unpacks() {
        let meta = Meta::new(123_456_789, TaskKind::Hook, State::Reserved, false);
        assert_eq!(meta.started_us(), 123_456_789);
        assert_eq!(meta.kind(), TaskKind::Hook);
        assert!(meta.state() == State::Reserved && !meta.is_main());
        assert!(!meta.is_grouped());
        let meta = meta
            .with_panicked()
            .with_main()
            .with_grouped()
            .with_state(State::Finished);
        assert_eq!(meta.kind(), TaskKind::Hook);
        assert!(meta.state() == State::Finished && meta.is_main() && meta.has_panicked());
        assert!(meta.is_grouped());
        assert_eq!(meta.started_us(), 123_456_789);
    }

    #[test]
    fn a_reservation_is_all_zeros() {
        let fresh = Meta::new(0, TaskKind::Cancellable, State::Reserved, false);
        assert_eq!(fresh.0, Meta::RESERVED.0);
        assert_ne!(fresh.with_panicked().0, Meta::RESERVED.0);
        assert_ne!(fresh.with_state(State::Finished).0, Meta::RESERVED.0);
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        assert_eq!(std::mem::size_of::<slab::Slab<Entry>>(), 40);
    }
}
