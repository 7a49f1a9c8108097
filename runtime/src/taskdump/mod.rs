//! Where stuck work waits: one bounded tokio task dump, folded into each task's await chain.
//!
//! tokio can dump its tasks — every task re-polled in a tracing mode that records the await chain
//! down to the leaf future it waits on — when built with its `taskdump` feature and
//! `--cfg tokio_unstable`, on Linux (x86, x86_64, aarch64, s390x). With our `taskdump` feature
//! and that cfg, [`start`] asks for one; anywhere else it returns `None` and nothing changes.
//!
//! A dump is taken by a task on the runtime (a `current_thread` runtime can only be dumped from
//! its own thread), and its frames are resolved on a thread of its own: reading debug info takes
//! a hundred milliseconds or more, which no runtime thread should spend. A runtime whose threads
//! are blocked cannot be dumped at all, so whoever waits gives up after [`BOUND`].

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::task::TaskInfo;

/// Splits items between a build that can dump — the feature, the cfg, and a platform tokio dumps
/// on — and every other build, writing the condition once.
macro_rules! by_build {
    (can_dump { $($can:item)* } cannot { $($cannot:item)* }) => {
        by_build! {
            @all(
                feature = "taskdump",
                tokio_unstable,
                target_os = "linux",
                any(target_arch = "aarch64", target_arch = "x86", target_arch = "x86_64", target_arch = "s390x"),
            );
            { $($can)* } { $($cannot)* }
        }
    };
    (@$condition:meta; { $($can:item)* } { $($cannot:item)* }) => {
        $( #[cfg($condition)] $can )*
        $( #[cfg(not($condition))] $cannot )*
    };
}

/// How long a report waits for a `current_thread` runtime to be dumped: one that cannot be dumped
/// by then has its thread blocked.
const BOUND: Duration = Duration::from_millis(250);

/// The same for a multi-threaded runtime: tokio's dump itself waits up to 250 ms for every worker
/// to join it, and a dump of an idle runtime does wait that long (measured: 250.4 ms), so the
/// bound is 250 ms past tokio's own.
const BOUND_MULTI_THREAD: Duration = Duration::from_millis(500);

/// How long the abort at a deadline waits, after the dump, for its frames to be resolved: the
/// exit a second past the deadline must still come after the report.
const RESOLVE_AT_DEADLINE: Duration = Duration::from_millis(500);

/// How long the report's own thread waits for them (a waiting line, the `dump_signal` table). The
/// first resolution loads the binary's debug info (250–450 ms measured), and a waiting line held
/// longer would come after the abort it announces.
const RESOLVE: Duration = Duration::from_secs(1);

/// Of the tasks a report names, the chains of at most this many are resolved.
pub(crate) const TASKS: usize = 64;

/// The bound on dumping `runtime`.
pub(crate) fn bound(runtime: &tokio::runtime::Handle) -> Duration {
    match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => BOUND,
        _ => BOUND_MULTI_THREAD,
    }
}

/// The await chains of one dump, by tokio task id, each as the lines the report prints.
#[derive(Default)]
pub(crate) struct Chains(HashMap<tokio::task::Id, Vec<String>>);

impl Chains {
    /// Gives each item the chain of its task, where the dump has one.
    pub(crate) fn fill(&self, items: &mut [TaskInfo]) {
        for item in items {
            if let Some(chain) = item.task_id.and_then(|id| self.0.get(&id)) {
                item.chain = Some(chain.clone());
            }
        }
    }
}

/// Why a report goes on without chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missed {
    /// The runtime was not dumped within its bound: one of its threads is blocked.
    NotDumped(Duration),
    /// None was asked for: a worker thread has been in one poll this long, and a multi-threaded
    /// runtime's dump would stop the other workers to wait for it.
    #[allow(dead_code, reason = "only a build that can dump refuses one")]
    Blocked(Duration),
    /// It was, but its frames were not resolved in time.
    NotResolved(Duration),
}

/// A dump under way: taken by a task on the runtime, its frames resolved on a thread of its own.
#[derive(Clone)]
pub(crate) struct Pending(Arc<Slot>);

struct Slot {
    asked: Instant,
    bound: Duration,
    progress: Mutex<Progress>,
    changed: Condvar,
    notify: tokio::sync::Notify,
}

#[derive(Default)]
struct Progress {
    /// Why no dump was asked for, if none was.
    refused: Option<Missed>,
    /// When the runtime had been dumped.
    dumped: Option<Instant>,
    chains: Option<Chains>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.0
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks this thread until the chains arrive, or until a bound passes: the dump's, then
    /// [`RESOLVE`] for its frames. For the report's own thread, which may wait.
    pub(crate) fn wait(&self) -> Result<Chains, Missed> {
        let mut progress = self.lock();
        loop {
            if let Some(missed) = progress.refused {
                return Err(missed);
            }
            if let Some(chains) = progress.chains.take() {
                return Ok(chains);
            }
            let until = match progress.dumped {
                None => self.0.asked + self.0.bound,
                Some(at) => at + RESOLVE,
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(match progress.dumped {
                    None => Missed::NotDumped(self.0.bound),
                    Some(_) => Missed::NotResolved(RESOLVE),
                });
            }
            progress = match self.0.changed.wait_timeout(progress, left) {
                Ok((progress, _)) => progress,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Awaits the dump itself, up to its bound after it was asked for: for the abort at a
    /// deadline, which must not end the tasks before they are dumped. The runtime's thread may be
    /// the one the dump needs, so this yields rather than blocks.
    pub(crate) async fn dumped(&self) -> Result<(), Missed> {
        let until = tokio::time::Instant::from_std(self.0.asked + self.0.bound);
        let dumped = self.until(|progress| match (progress.refused, progress.dumped) {
            (Some(missed), _) => Some(Err(missed)),
            (None, Some(_)) => Some(Ok(())),
            (None, None) => None,
        });
        tokio::time::timeout_at(until, dumped)
            .await
            .unwrap_or(Err(Missed::NotDumped(self.0.bound)))
    }

    /// Awaits the chains of a dump already taken, up to [`RESOLVE_AT_DEADLINE`].
    pub(crate) async fn resolved(&self) -> Result<Chains, Missed> {
        let resolved = self.until(|progress| progress.chains.take());
        tokio::time::timeout(RESOLVE_AT_DEADLINE, resolved)
            .await
            .map_err(|_| Missed::NotResolved(RESOLVE_AT_DEADLINE))
    }

    async fn until<T>(&self, mut done: impl FnMut(&mut Progress) -> Option<T>) -> T {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the state is read, so a change in between is not missed.
            notified.as_mut().enable();
            if let Some(out) = done(&mut self.lock()) {
                return out;
            }
            notified.await;
        }
    }
}

by_build! {
    can_dump {
        /// Whether this build can dump.
        pub(crate) const BUILT: bool = true;

        /// Asks `runtime` for one dump, to be resolved for the first tasks of `wanted` (the ones a
        /// report names); `None` where this build cannot dump, or while another dump is under way.
        pub(crate) fn start(
            runtime: &tokio::runtime::Handle,
            wanted: impl FnOnce() -> Vec<tokio::task::Id>,
        ) -> Option<Pending> {
            // One dump at a time: a dump pauses every worker and re-polls every task, and a
            // storm of `dump_signal`s must not queue dumps behind one that cannot finish.
            let in_flight = InFlight::take()?;
            let mut wanted = wanted();
            wanted.truncate(TASKS);
            let pending = Pending(Arc::new(Slot {
                asked: Instant::now(),
                bound: bound(runtime),
                progress: Mutex::default(),
                changed: Condvar::new(),
                notify: tokio::sync::Notify::new(),
            }));
            if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
                if let Some(long) = polls::longest_poll().filter(|long| *long > polls::BLOCKED) {
                    pending.update(|progress| progress.refused = Some(Missed::Blocked(long)));
                    return Some(pending);
                }
            }
            let to = pending.clone();
            runtime.spawn(async move {
                let dump = tokio::runtime::Handle::current().dump().await;
                to.update(|progress| progress.dumped = Some(Instant::now()));
                // Resolving frames reads the binary's debug info: off the runtime's threads.
                let _ = std::thread::Builder::new()
                    .name("graceful-taskdump".into())
                    .spawn(move || {
                        let chains = fold::chains(&dump, &wanted);
                        to.update(|progress| progress.chains = Some(chains));
                        drop(in_flight);
                    });
            });
            Some(pending)
        }

        /// The one dump under way in this process, until its chains are resolved or it is dropped
        /// unfinished (its runtime shut down).
        struct InFlight;

        static DUMPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

        impl InFlight {
            fn take() -> Option<InFlight> {
                let taken = DUMPING.swap(true, std::sync::atomic::Ordering::AcqRel);
                (!taken).then_some(InFlight)
            }
        }

        impl Drop for InFlight {
            fn drop(&mut self) {
                DUMPING.store(false, std::sync::atomic::Ordering::Release);
            }
        }

        impl Pending {
            fn update(&self, change: impl FnOnce(&mut Progress)) {
                change(&mut self.lock());
                self.0.changed.notify_all();
                self.0.notify.notify_waiters();
            }
        }

        mod fold;
        mod polls;

        /// Has the runtime `builder` makes keep, for each thread, since when it is in a poll: a
        /// dump is not asked of a multi-threaded runtime one of whose workers is blocked.
        pub(crate) fn watch_polls(builder: &mut tokio::runtime::Builder) {
            polls::watch(builder);
        }
    }
    cannot {
        /// Whether this build can dump.
        pub(crate) const BUILT: bool = false;

        /// Asks `runtime` for one dump; `None` where this build cannot dump.
        pub(crate) fn start(
            _runtime: &tokio::runtime::Handle,
            _wanted: impl FnOnce() -> Vec<tokio::task::Id>,
        ) -> Option<Pending> {
            None
        }

        /// Keeps nothing where there are no dumps.
        pub(crate) fn watch_polls(_builder: &mut tokio::runtime::Builder) {}
    }
}
