//! Ending the process with the status of SPEC §6: `main`'s value, 101 after a panic, death by the
//! signal that started the shutdown, or the code the user asked for.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use crate::context::Shared;
use crate::report;
use crate::shutdown::MainOutcome;
use crate::signals::Signal;

/// Why the process is ended before the sequence has finished.
pub(crate) enum Forced {
    /// A captured signal arrived while the shutdown ran.
    Signal(Signal),
    /// The watchdog: the runtime is wedged a second past the deadline.
    Overrun,
}

/// Only one thread may end the process: `exit` racing `exit` is undefined behaviour in libc.
/// The loser parks: the winner is ending the process under it.
fn claim_exit(shared: &Shared) {
    if shared.exiting.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// Ends the process now, from the signal thread or the watchdog, with one line saying what was
/// still running.
pub(crate) fn force(shared: &Shared, why: Forced) -> ! {
    claim_exit(shared);
    let items = report::running(shared);
    let what = report::describe(&items);
    let (message, signal) = match why {
        Forced::Signal(signal) => (
            format!("forced exit by {} while waiting for {what}", signal.name),
            Some(signal),
        ),
        Forced::Overrun => (
            format!("the shutdown overran its deadline; forced exit while waiting for {what}"),
            shared.trigger.started().and_then(|s| s.signal),
        ),
    };
    report::stderr_line(format_args!("{message}"));
    tracing::error!(target: "graceful", phase = "forced", "{message}");
    match signal {
        Some(signal) => end_by_signal(shared, signal),
        None => {
            flush();
            std::process::exit(1)
        }
    }
}

pub(crate) fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

fn end_by_signal(shared: &Shared, signal: Signal) -> ! {
    flush();
    if let Some(code) = shared.config.signal_exit_code {
        std::process::exit(code.into())
    }
    die(signal)
}

/// Dies by `signal` so the parent sees it (shell 130 for SIGINT, systemd a clean stop); where the
/// signal is ignored anyway (PID 1 in a container), exits with 128 + its number.
#[cfg(unix)]
fn die(signal: Signal) -> ! {
    // Our handler replaced the default action for the life of the process: restore it, make sure
    // the signal is not blocked on this thread, and raise it.
    unsafe {
        libc::signal(signal.number, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal.number);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal.number);
    }
    std::process::exit(128 + signal.number)
}

#[cfg(not(unix))]
fn die(_signal: Signal) -> ! {
    const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;
    std::process::exit(STATUS_CONTROL_C_EXIT as i32)
}

/// The status once the sequence has finished, in SPEC §6's order:
/// forced > panic > signal > `shutdown_with_code` > `main`'s value.
pub(crate) fn status(shared: &Shared, main: MainOutcome) -> ExitCode {
    claim_exit(shared);
    if shared.trigger.panicked.load(Ordering::SeqCst) || matches!(main, MainOutcome::Panicked) {
        return ExitCode::from(101);
    }
    if let Some(signal) = shared.trigger.started().and_then(|s| s.signal) {
        if let Some(code) = shared.config.signal_exit_code {
            return ExitCode::from(code);
        }
        if shared.config.exits_process {
            end_by_signal(shared, signal)
        }
    }
    if let Some(code) = shared.trigger.code() {
        return ExitCode::from(code);
    }
    match main {
        MainOutcome::Returned(code) => code,
        // `main` never finished: the shutdown was not clean.
        MainOutcome::Panicked | MainOutcome::Aborted => ExitCode::FAILURE,
    }
}
