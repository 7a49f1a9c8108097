//! What starts the shutdown, exactly once, and what the first trigger decided: the reason, the
//! moment and deadline, the first captured signal, the code, and whether a panic or a failed
//! service sets the status.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::deadline::later;
use crate::reason::Reason;
use crate::signal::Signal;

pub(crate) struct Started {
    pub(crate) reason: Reason,
    pub(crate) at: Instant,
    pub(crate) deadline: Instant,
}

const NO_CODE: u16 = u16::MAX;

pub(crate) struct Trigger {
    started: OnceLock<Started>,
    /// The first captured signal and when it was delivered, whether it started the shutdown or
    /// joined one already running: it decides the exit status, and a repeat of it more than a
    /// second later forces the exit.
    pub(crate) first_signal: OnceLock<(Signal, Instant)>,
    /// Cancelled by the first trigger: wakes the sequence, from any thread (the signal thread).
    fired: CancellationToken,
    /// `shutdown_with_code`'s status, or `NO_CODE`.
    code: AtomicU16,
    /// A panic in `main`, or in a tracked task under `stop_on_panic`: the status becomes 101.
    panicked: AtomicBool,
    /// A service failed under `stop_on_error`: the status becomes 1.
    failed: AtomicBool,
}

impl Default for Trigger {
    fn default() -> Trigger {
        Trigger {
            started: OnceLock::new(),
            first_signal: OnceLock::new(),
            fired: CancellationToken::new(),
            code: AtomicU16::new(NO_CODE),
            panicked: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }
}

impl Trigger {
    pub(crate) fn started(&self) -> Option<&Started> {
        self.started.get()
    }

    /// The first captured signal, if one arrived.
    pub(crate) fn signal(&self) -> Option<Signal> {
        self.first_signal.get().map(|(signal, _)| *signal)
    }

    pub(crate) fn code(&self) -> Option<u8> {
        u8::try_from(self.code.load(Ordering::SeqCst)).ok()
    }

    pub(crate) fn set_panicked(&self) {
        self.panicked.store(true, Ordering::SeqCst);
    }

    pub(crate) fn set_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Whether a panic stops the program (status 101).
    pub(crate) fn has_panicked(&self) -> bool {
        self.panicked.load(Ordering::SeqCst)
    }

    /// Whether a failed service stops the program (status 1).
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    pub(crate) fn set_code(&self, code: u8) {
        self.code.store(u16::from(code), Ordering::SeqCst);
    }

    /// Sets the reason, the moment and the deadline, unless a trigger came first; returns whether
    /// this one did. The caller then tells whoever must know (see `Runtime::start_shutdown`) and
    /// only then [`fire`](Self::fire)s.
    pub(crate) fn start(&self, reason: Reason, grace: Duration) -> Option<&Started> {
        let at = Instant::now();
        let started = Started {
            reason,
            at,
            deadline: later(at, grace),
        };
        self.started.set(started).ok()?;
        self.started.get()
    }

    /// Wakes the sequence, from any thread (the signal thread).
    pub(crate) fn fire(&self) {
        self.fired.cancel();
    }

    /// Cancelled once the shutdown has started and everyone was told.
    pub(crate) fn fired(&self) -> &CancellationToken {
        &self.fired
    }

    /// Time left until the deadline, or all of `grace` before the start.
    pub(crate) fn time_left(&self, grace: Duration) -> Duration {
        self.started().map_or(grace, |s| {
            s.deadline.saturating_duration_since(Instant::now())
        })
    }
}
