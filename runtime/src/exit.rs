//! Ending the process with the right status: `main`'s value, 101 after a panic, death by the
//! signal that asked for the shutdown, or the code the user asked for.
//!
//! Two ways out. The normal one, once the sequence has finished, flushes std's buffers and
//! returns the status (or dies by the signal). The forced one — a signal repeated more than a
//! second after the first, or the watchdog a second past the deadline — runs on the watchdog's
//! thread and must end the process whatever other threads hold: it takes no lock of std's, writes
//! its last line only if that cannot block, and ends with `_exit` or a raised signal, which are
//! safe to race with a normal `exit` on another thread.

use std::io::Write as _;
use std::process::ExitCode;

use crate::context::Shared;
use crate::report;
use crate::shutdown::sequence::MainOutcome;
use crate::signals::Signal;

/// Why the process is ended before the sequence has finished.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Forced {
    /// A captured signal repeated more than a second after the first.
    Signal(Signal),
    /// The watchdog: the runtime is wedged a second past the deadline.
    Overrun,
}

/// Ends the process now, with one line saying what was still running.
pub(crate) fn force(shared: &Shared, why: Forced) -> ! {
    if !shared.watchdog.claim_forced_exit() {
        // The other forced path is ending the process, and nothing can stop it: wait for it.
        loop {
            std::thread::park();
        }
    }
    let items = report::running(shared);
    let what = report::describe(&items);
    let message = match why {
        Forced::Signal(signal) => {
            format!("forced exit by {} while waiting for {what}", signal.name)
        }
        Forced::Overrun => {
            format!("the shutdown overran its deadline; forced exit while waiting for {what}")
        }
    };
    report::last_words(&message);
    // A forced exit is never a clean one: a status of 0 the user chose becomes 1. Death by the
    // signal stays as it is: supervisors read it as "stopped on request".
    match (
        shared.shutdown.trigger.signal(),
        shared.config.signal_exit_code,
    ) {
        (Some(_), Some(code)) => quit_now(i32::from(code.max(1))),
        (Some(signal), None) => die(signal),
        (None, _) => quit_now(1),
    }
}

/// Flushes std's buffers. Only on the normal path: with a pipe nobody reads this blocks, and
/// only the watchdog, armed until the status is decided, ends that wait.
fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// Ends the process with `code`, running no exit handler and taking no lock.
fn quit_now(code: i32) -> ! {
    #[cfg(unix)]
    // SAFETY: `_exit` has no preconditions; it ends every thread at once.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}

/// Dies by `signal` so the parent sees it (shell 130 for SIGINT, systemd a clean stop); where the
/// signal is ignored anyway (PID 1 in a container), exits with 128 + its number.
#[cfg(unix)]
fn die(signal: Signal) -> ! {
    // Our handler replaced the default action for the life of the process: restore it, make sure
    // the signal is not blocked on this thread, and raise it.
    // SAFETY: plain libc calls on a signal number that is valid (we captured it) and a set on
    // the stack; the process ends right after.
    unsafe {
        libc::signal(signal.number(), libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal.number());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal.number());
    }
    quit_now(128 + signal.number())
}

#[cfg(not(unix))]
fn die(_signal: Signal) -> ! {
    const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;
    quit_now(STATUS_CONTROL_C_EXIT as i32)
}

/// The status once the sequence has finished, in this order:
/// panic > signal > failed service > `shutdown_with_code` > upgraded > `main`'s value.
///
/// A shutdown that was not `clean` (work aborted or abandoned, hooks not run at the deadline)
/// never exits 0, whoever chose the 0 (`signal_exit_code = 0`, `shutdown_with_code(0)`, `main`
/// returning `Ok`): it becomes 1. Death by a signal stays as it is: supervisors read it as
/// "stopped on request", and the report says what was cut.
pub(crate) fn status(shared: &Shared, main: MainOutcome, clean: bool) -> ExitCode {
    let code = decided(shared, main);
    if !clean && code == ExitCode::SUCCESS {
        ExitCode::FAILURE
    } else {
        code
    }
}

fn decided(shared: &Shared, main: MainOutcome) -> ExitCode {
    if shared.shutdown.trigger.has_panicked() || matches!(main, MainOutcome::Panicked) {
        return ExitCode::from(101);
    }
    if let Some(signal) = shared.shutdown.trigger.signal() {
        if let Some(code) = shared.config.signal_exit_code {
            return ExitCode::from(code);
        }
        if shared.config.exits_process {
            flush();
            die(signal)
        }
    }
    if shared.shutdown.trigger.has_failed() {
        return ExitCode::FAILURE;
    }
    if let Some(code) = shared.shutdown.trigger.code() {
        return ExitCode::from(code);
    }
    if shared.shutdown.trigger.started().map(|s| &s.reason)
        == Some(&crate::shutdown::Reason::Upgraded)
    {
        return ExitCode::SUCCESS;
    }
    match main {
        MainOutcome::Returned(code) => code,
        // `main` never finished: the shutdown was not clean.
        MainOutcome::Panicked | MainOutcome::ProtectedAborted | MainOutcome::Aborted => {
            ExitCode::FAILURE
        }
    }
}
