//! What the watchdog thread watches: the shutdown's start and deadline once armed, a forced exit
//! asked for, and whether `run` is over. State only; the thread is `watchdog/mod.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::signal::Signal;

/// Why the process is ended before the sequence has finished.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Forced {
    /// A captured signal repeated more than a second after the first.
    Signal(Signal),
    /// The watchdog: the runtime is wedged a second past the deadline.
    Overrun,
}

#[derive(Default)]
pub(crate) struct Watchdog {
    state: Mutex<State>,
    pub(super) cond: Condvar,
    /// Claimed by the forced exit: a second signal and the deadline may race to it.
    forcing: AtomicBool,
}

#[derive(Default)]
pub(super) struct State {
    /// Trigger time and deadline, once the shutdown started.
    pub(super) armed: Option<(Instant, Instant)>,
    /// A forced exit asked for by the signal thread.
    pub(super) forced: Option<Forced>,
    /// `run` has finished: nothing left to watch.
    pub(super) done: bool,
}

impl Watchdog {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn arm(&self, at: Instant, deadline: Instant) {
        self.lock().armed = Some((at, deadline));
        self.cond.notify_all();
    }

    /// Ends the process now, from the watchdog's thread (the caller returns at once).
    pub(crate) fn force(&self, why: Forced) {
        self.lock().forced.get_or_insert(why);
        self.cond.notify_all();
    }

    /// Whether this caller is the one to carry out the forced exit.
    pub(crate) fn claim_forced_exit(&self) -> bool {
        !self.forcing.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn disarm(&self) {
        self.lock().done = true;
        self.cond.notify_all();
    }
}
