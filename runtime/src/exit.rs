//! Ending the process with the right status: `main`'s value, 101 after a panic, death by the
//! signal that asked for the shutdown, or the code the user asked for.
//!
//! Two ways out. The normal one: once the sequence has finished, [`decide`] makes the [`Exit`]
//! that `run` returns, and `Exit`, returned from `main`, flushes std's buffers and ends the
//! process with it (or dies by the signal). The forced one — a signal repeated more than a
//! second after the first, or the watchdog a second past the deadline — runs on the watchdog's
//! thread and must end the process whatever other threads hold: it takes no lock of std's, writes
//! its last line only if that cannot block, and ends with `_exit` or a raised signal, which are
//! safe to race with a normal `exit` on another thread.

use std::fmt;
use std::io::Write as _;
use std::process::{ExitCode, Termination};

use crate::report;
use crate::runtime::Runtime;
use crate::signal::Signal;
use crate::watchdog::state::Forced;

/// Ends the process now, with one line saying what was still running.
pub(crate) fn force(shared: &Runtime, why: Forced) -> ! {
    if !shared.watchdog().claim_forced_exit() {
        // The other forced path is ending the process, and nothing can stop it: wait for it.
        loop {
            std::thread::park();
        }
    }
    let items = report::running(shared.registry().snapshot());
    let what = report::describe(&items, None);
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
        shared.shutdown().trigger.signal(),
        shared.config().signal_exit_code,
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
    quit_now(STATUS_CONTROL_C_EXIT as i32)
}

/// What decides the status of a run that ended normally, gathered once the sequence has finished.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ending {
    /// `main` panicked (not by awaiting aborted protected work), or a task did under
    /// `stop_on_panic`.
    pub(crate) panicked: bool,
    /// The first captured signal.
    pub(crate) signal: Option<Signal>,
    pub(crate) signal_exit_code: Option<u8>,
    /// A service failed under `stop_on_error`, or a supervisor gave up.
    pub(crate) failed: bool,
    /// `shutdown_with_code`'s code.
    pub(crate) code: Option<u8>,
    /// A restart without downtime handed over.
    pub(crate) upgraded: bool,
    /// `main`'s value; `None` if it never returned one (aborted, or panicked).
    pub(crate) main: Option<ExitCode>,
    /// Nothing was aborted or abandoned, and every hook ran.
    pub(crate) clean: bool,
}

/// The status, in this order: panic, signal, failed service, `shutdown_with_code`, upgraded,
/// `main`'s value (or 1 if `main` never returned one). The forced exits come first of all, but
/// end the process themselves ([`force`]).
///
/// A shutdown that was not `clean` (work aborted or abandoned, hooks not run at the deadline)
/// never exits 0, whoever chose the 0 (`signal_exit_code = 0`, `shutdown_with_code(0)`, an
/// upgrade, `main` returning `Ok`): it becomes 1. Death by a signal stays as it is: supervisors
/// read it as "stopped on request", and the report says what was cut.
pub(crate) fn decide(ending: &Ending) -> Exit {
    let exit = if ending.panicked {
        Exit::from(101)
    } else if let Some(signal) = ending.signal {
        match ending.signal_exit_code {
            Some(code) => Exit::from(code),
            None => Exit {
                status: Status::Signal(signal),
            },
        }
    } else if ending.failed {
        Exit::from(1)
    } else if let Some(code) = ending.code {
        Exit::from(code)
    } else if ending.upgraded {
        Exit::from(0)
    } else {
        ending.main.map_or(Exit::from(1), Exit::from)
    };
    if !ending.clean && exit.status == Status::Code(0) {
        Exit::from(1)
    } else {
        exit
    }
}

/// How a graceful run ended: the exit status it owes, a code or a death by a signal.
///
/// [`Builder::run`](crate::Builder::run) returns it, and `#[graceful::main]` returns it from
/// `main`: as `main`'s value ([`Termination`]) it flushes stdout and stderr (for at most a
/// second) and ends the process with its status — dying by the signal that started the shutdown
/// (shell status 130 for SIGINT, 143 for SIGTERM; systemd and Kubernetes read it as "stopped on
/// request"), or, where a signal cannot end the process (PID 1 in a container), exiting with 128
/// plus its number. So `fn main() -> graceful::Exit { Builder::new().run(app()) }` behaves as
/// `#[graceful::main]`, and a program that embeds the runtime runs its own code after `run`
/// before it returns the `Exit`.
///
/// Converting it to an [`ExitCode`] (`ExitCode::from(exit)`), or dropping it, loses the death by
/// a signal: the status becomes [`code()`](Exit::code) (`143`), which systemd reads as a failure
/// unless the unit says `SuccessExitStatus=143`.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::process::ExitCode;
///
/// let exit = graceful::Builder::new().signals([]).run(async {
///     graceful::shutdown_with_code(3);
/// });
/// assert_eq!(exit.code(), 3);
/// assert_eq!(exit.signal(), None);
/// // What `main` would hand to std if it returned an `ExitCode` instead.
/// let code = ExitCode::from(exit);
/// assert_eq!(code, ExitCode::from(3));
/// ```
#[must_use = "returned from `main`, it ends the process with its status"]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    status: Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Code(u8),
    Signal(Signal),
}

impl Exit {
    /// Returns the signal the process dies by when this `Exit` ends it, if any.
    ///
    /// That is the signal that started the shutdown, unless `signal_exit_code` is set.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let exit = graceful::Builder::new().signals([]).run(async {});
    /// assert_eq!(exit.signal(), None, "main returned");
    /// ```
    pub fn signal(&self) -> Option<Signal> {
        match self.status {
            Status::Signal(signal) => Some(signal),
            Status::Code(_) => None,
        }
    }

    /// Returns the exit status as a shell shows it (on Unix, 128 + the number after a death by
    /// signal).
    ///
    /// On Windows an owed console event is `STATUS_CONTROL_C_EXIT` as an `i32`, as
    /// `ExitStatus::code` shows it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let exit = graceful::Builder::new().signals([]).run(async { Err::<(), _>("no config") });
    /// assert_eq!(exit.code(), 1);
    /// ```
    pub fn code(&self) -> i32 {
        match self.status {
            Status::Code(code) => i32::from(code),
            Status::Signal(signal) => signal_status(signal),
        }
    }
}

#[cfg(unix)]
fn signal_status(signal: Signal) -> i32 {
    128 + signal.number()
}

#[cfg(not(unix))]
fn signal_status(_signal: Signal) -> i32 {
    STATUS_CONTROL_C_EXIT as i32
}

/// What a console event that ends a Windows process leaves as its status.
#[cfg(not(unix))]
const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exit = f.debug_struct("Exit");
        if let Some(signal) = self.signal() {
            exit.field("signal", &signal);
        }
        exit.field("code", &self.code()).finish()
    }
}

impl From<u8> for Exit {
    /// A status of `code`: an early return from `fn main() -> graceful::Exit`.
    fn from(code: u8) -> Exit {
        Exit {
            status: Status::Code(code),
        }
    }
}

impl From<ExitCode> for Exit {
    /// `main`'s own `ExitCode` (std has no accessor: the code is found by comparing).
    fn from(code: ExitCode) -> Exit {
        let code = (0..=u8::MAX)
            .find(|n| ExitCode::from(*n) == code)
            .unwrap_or(1);
        Exit::from(code)
    }
}

impl From<Exit> for ExitCode {
    /// [`Exit::code`] where it fits a `u8`; a death by a signal is lost (on Windows an owed
    /// console event gives 130).
    fn from(exit: Exit) -> ExitCode {
        match exit.status {
            Status::Code(code) => ExitCode::from(code),
            // 128 + n on Unix; on Windows the console event's status does not fit: 130.
            Status::Signal(_) => ExitCode::from(u8::try_from(exit.code()).unwrap_or(130)),
        }
    }
}

impl Termination for Exit {
    /// Flushes stdout and stderr, then ends the process with this status without returning (so
    /// std's own clean-up, which would flush again without a bound, never runs). A timer thread
    /// ends the process with the same status if the flush blocks for a second.
    fn report(self) -> ExitCode {
        let last = self;
        let _ = std::thread::Builder::new()
            .name("graceful-exit".into())
            .spawn(move || {
                std::thread::sleep(LAST_FLUSH);
                end_now(last)
            });
        flush();
        end_now(self)
    }
}

/// How long `Exit`'s last flush may block.
const LAST_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

fn end_now(exit: Exit) -> ! {
    match exit.status {
        Status::Code(code) => quit_now(i32::from(code)),
        Status::Signal(signal) => die(signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Ending {
        Ending {
            main: Some(ExitCode::SUCCESS),
            clean: true,
            ..Ending::default()
        }
    }

    #[test]
    fn main_returned_nothing_failed_is_mains_value() {
        assert_eq!(decide(&clean()), Exit::from(0));
        let failed = Ending {
            main: Some(ExitCode::from(7)),
            ..clean()
        };
        assert_eq!(decide(&failed), Exit::from(7));
    }

    #[test]
    fn shutdown_with_code_comes_before_mains_value() {
        let ending = Ending {
            code: Some(4),
            main: Some(ExitCode::from(7)),
            ..clean()
        };
        assert_eq!(decide(&ending), Exit::from(4));
    }

    #[test]
    fn a_failed_service_is_1_before_shutdown_with_code() {
        let ending = Ending {
            failed: true,
            code: Some(4),
            ..clean()
        };
        assert_eq!(decide(&ending), Exit::from(1));
    }

    #[test]
    fn a_panic_is_101_before_everything_else() {
        let ending = Ending {
            panicked: true,
            signal: Some(Signal::SIGTERM),
            failed: true,
            code: Some(4),
            ..clean()
        };
        assert_eq!(decide(&ending), Exit::from(101));
    }

    #[test]
    fn a_signal_is_owed_before_a_failed_service_unless_signal_exit_code_is_set() {
        let ending = Ending {
            signal: Some(Signal::SIGTERM),
            failed: true,
            ..clean()
        };
        assert_eq!(decide(&ending).signal(), Some(Signal::SIGTERM));
        let coded = Ending {
            signal_exit_code: Some(0),
            ..ending
        };
        assert_eq!(decide(&coded), Exit::from(0));
    }

    #[test]
    fn an_upgrade_is_0_before_mains_value() {
        let ending = Ending {
            upgraded: true,
            main: Some(ExitCode::from(7)),
            ..clean()
        };
        assert_eq!(decide(&ending), Exit::from(0));
    }

    #[test]
    fn main_that_never_returned_is_1() {
        let ending = Ending {
            main: None,
            ..clean()
        };
        assert_eq!(decide(&ending), Exit::from(1));
    }

    #[test]
    fn an_unclean_shutdown_is_never_0_but_a_signal_stays() {
        for chose_zero in [
            Ending {
                clean: false,
                ..clean()
            },
            Ending {
                clean: false,
                code: Some(0),
                ..clean()
            },
            Ending {
                clean: false,
                upgraded: true,
                ..clean()
            },
            Ending {
                clean: false,
                signal: Some(Signal::SIGTERM),
                signal_exit_code: Some(0),
                ..clean()
            },
        ] {
            assert_eq!(decide(&chose_zero), Exit::from(1), "{chose_zero:?}");
        }
        let signal = Ending {
            clean: false,
            signal: Some(Signal::SIGINT),
            ..clean()
        };
        assert_eq!(decide(&signal).signal(), Some(Signal::SIGINT));
    }

    #[test]
    fn an_exit_converts_to_and_from_exit_codes() {
        #[cfg(unix)]
        {
            let sigterm = Exit {
                status: Status::Signal(Signal::SIGTERM),
            };
            assert_eq!(sigterm.code(), 128 + libc::SIGTERM);
            assert_eq!(ExitCode::from(sigterm), ExitCode::from(143));
        }
        assert_eq!(Exit::from(ExitCode::from(42)), Exit::from(42));
        assert_eq!(ExitCode::from(Exit::from(42)), ExitCode::from(42));
        assert_eq!(format!("{:?}", Exit::from(3)), "Exit { code: 3 }");
    }
}
