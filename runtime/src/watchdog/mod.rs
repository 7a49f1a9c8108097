//! The watchdog: an OS thread that, once the shutdown has started, says what it waits for one
//! second in (then every five) and ends the process a second past the deadline whatever the
//! runtime is doing — a task blocking its only thread, a hook that never returns, a stdout or
//! stderr that blocks. It is also the thread that carries out a forced exit for the signal
//! thread, which must stay free to hear signals.
//!
//! It never blocks on anything but its own lock: its lines go to the report's thread, and the
//! exit writes its last line only if that cannot block.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::deadline::later;
use crate::exit;
use crate::report;
use crate::runtime::Runtime;

pub(crate) mod state;

use state::Forced;

const FIRST_LINE: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_secs(5);
const PAST_DEADLINE: Duration = Duration::from_secs(1);

/// Starts the watchdog thread. Once [`Watchdog::disarm`]ed, it ends at once: join it then, so
/// that nothing of the runtime outlives `run`.
pub(crate) fn start(shared: &Arc<Runtime>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("graceful-watchdog".into())
        .spawn(move || watch(&shared))
}

fn watch(shared: &Runtime) {
    let dog = shared.watchdog();
    let mut state = dog.lock();
    let mut next_line = None;
    // The first waiting line asks for a task dump, so it can say where the stuck work waits.
    let mut dumped = false;
    loop {
        if state.done {
            return;
        }
        if let Some(why) = state.forced.take() {
            drop(state);
            exit::force(shared, why);
        }
        let now = Instant::now();
        let mut wake = None;
        if let Some((at, deadline)) = state.armed {
            let hard = later(deadline, PAST_DEADLINE);
            if now >= hard && shared.config().exits_process {
                drop(state);
                exit::force(shared, Forced::Overrun);
            }
            let line = *next_line.get_or_insert(later(at, FIRST_LINE));
            if now >= line {
                // Outside the lock: the line lists the live tasks, which takes a while with a
                // million of them, and the signal thread must not wait for it to ask for an exit.
                drop(state);
                let force = report::how_to_force(
                    shared.config().second_signal,
                    shared.shutdown().trigger.signal(),
                    shared.config().signals().first().copied(),
                );
                report::waiting(
                    shared.reporter(),
                    deadline,
                    || report::running(shared.registry().snapshot()),
                    |items| match std::mem::replace(&mut dumped, true) {
                        false => shared.take_dump(items),
                        true => None,
                    },
                    &force,
                );
                next_line = Some(later(line, EVERY));
                state = dog.lock();
                continue;
            }
            wake = Some(if shared.config().exits_process {
                line.min(hard)
            } else {
                line
            });
        }
        state = match wake {
            None => dog.cond.wait(state).unwrap_or_else(PoisonError::into_inner),
            Some(wake) => match dog.cond.wait_timeout(state, wake - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            },
        };
    }
}
