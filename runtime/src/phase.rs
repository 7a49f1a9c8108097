//! How far a shutdown has come, as work spawned late must know ([`Phase`]), and whether this
//! thread is polling a runtime's `main` now: plain values, set by the sequence and read by the
//! spawn paths and a scope's turn.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::task::TaskKind;

/// How far the sequence has come, as work spawned late must know: read by every spawn, and by
/// every tracked future's first poll.
#[derive(Default)]
pub(crate) struct Phase(AtomicU8);

const RUNNING: u8 = 0;
/// Step 2 has begun: `spawn` tasks are cancelled before their first poll.
const CANCELLING: u8 = 1;
/// Step 5 has begun: all async work is aborted before its first poll.
const ABORTING: u8 = 2;

impl Phase {
    /// Whether work of `kind` spawned now must never run.
    ///
    /// The spawner asks after its entry is in the registry, and the step sets the phase before it
    /// reads the registry: with both `SeqCst` and the registry's lock between them, either the
    /// step sees the entry and aborts it, or the spawner sees the phase and aborts it itself.
    #[inline]
    pub(crate) fn cancels_at_once(&self, kind: TaskKind) -> bool {
        match self.0.load(Ordering::SeqCst) {
            RUNNING => false,
            CANCELLING => kind == TaskKind::Cancellable,
            _ => kind != TaskKind::Blocking,
        }
    }

    pub(crate) fn begin_cancel(&self) {
        self.leave_running();
        self.0.fetch_max(CANCELLING, Ordering::SeqCst);
    }

    pub(crate) fn begin_abort(&self) {
        self.leave_running();
        self.0.fetch_max(ABORTING, Ordering::SeqCst);
    }

    /// Counted before the phase moves, so that a reader who finds no phase of the process
    /// started would have found this one running too (`SeqCst` on both sides).
    fn leave_running(&self) {
        if self.0.load(Ordering::SeqCst) == RUNNING {
            LEFT_RUNNING.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// How many phases of this process, of any runtime and scope, have left `RUNNING` (a race may
/// count one twice; it only ever grows). While it is zero, no work anywhere is to be cancelled
/// at once, and a tracked future's first poll need not look its runtime up to learn that.
static LEFT_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether some phase of the process may have left `RUNNING`: if not, nothing cancels at once.
#[inline]
pub(crate) fn any_phase_left_running() -> bool {
    LEFT_RUNNING.load(Ordering::SeqCst) != 0
}

thread_local! {
    /// Whether this thread is polling `main` now: `main` is the root's own work, which must not
    /// await the root scope's shutdown (it would wait for itself).
    static POLLING_MAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as polling `main` until dropped (unwinding included).
pub(crate) struct PollingMain(bool);

impl PollingMain {
    pub(crate) fn enter() -> PollingMain {
        PollingMain(POLLING_MAIN.replace(true))
    }
}

impl Drop for PollingMain {
    fn drop(&mut self) {
        POLLING_MAIN.set(self.0);
    }
}

/// Whether this thread is polling some runtime's `main` now.
pub(crate) fn is_polling_main() -> bool {
    POLLING_MAIN.get()
}
