//! The watchdog: an OS thread that, once the shutdown has started, says what it waits for one
//! second in (then every five) and ends the process a second past the deadline whatever the
//! runtime is doing — a task blocking its only thread, a hook that never returns.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::context::Shared;
use crate::exit::{self, Forced};
use crate::report;

const FIRST_LINE: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_secs(5);
const PAST_DEADLINE: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Watchdog {
    state: Mutex<State>,
    cond: Condvar,
}

#[derive(Default)]
struct State {
    /// Trigger time and deadline, once the shutdown started.
    armed: Option<(Instant, Instant)>,
    /// `run` has finished: nothing left to watch.
    done: bool,
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn arm(&self, at: Instant, deadline: Instant) {
        self.lock().armed = Some((at, deadline));
        self.cond.notify_all();
    }

    pub(crate) fn disarm(&self) {
        self.lock().done = true;
        self.cond.notify_all();
    }
}

/// Starts the watchdog thread. Once [`Watchdog::disarm`]ed, it ends at once: join it then, so
/// that nothing of the runtime outlives `run`.
pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("graceful-watchdog".into())
        .spawn(move || watch(&shared))
}

fn watch(shared: &Shared) {
    let dog = &shared.watchdog;
    let mut state = dog.lock();
    let (at, deadline) = loop {
        if state.done {
            return;
        }
        if let Some(armed) = state.armed {
            break armed;
        }
        state = dog.cond.wait(state).unwrap_or_else(PoisonError::into_inner);
    };
    let hard = deadline + PAST_DEADLINE;
    let mut next_line = at + FIRST_LINE;
    loop {
        if state.done {
            return;
        }
        let now = Instant::now();
        if now >= hard && shared.config.exits_process {
            drop(state);
            exit::force(shared, Forced::Overrun);
        }
        if now >= next_line {
            drop(state);
            report::waiting(shared, deadline);
            next_line += EVERY;
            state = dog.lock();
            continue;
        }
        let wake = if shared.config.exits_process {
            next_line.min(hard)
        } else {
            next_line
        };
        state = match dog.cond.wait_timeout(state, wake - now) {
            Ok((state, _)) => state,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}
