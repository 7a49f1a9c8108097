//! The settings of one runtime as plain values: what `Builder` collects and every part of the
//! runtime reads (`Config`), and the public enums of its options.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::signal::{self, Signal};
use graceful_options as options;

/// The tokio runtime flavor a graceful runtime uses.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// let here = std::thread::current().id();
/// graceful::Builder::new()
///     .signals([])
///     .flavor(graceful::Flavor::CurrentThread)
///     .run(async move {
///         // One thread: spawned tasks run on the thread that called `run`.
///         let there = graceful::spawn(async { std::thread::current().id() });
///         assert_eq!(there.await.unwrap(), here);
///     });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// tokio's work-stealing runtime (the default, as for `#[tokio::main]`).
    #[default]
    MultiThread,
    /// One thread: the thread that calls `run`.
    CurrentThread,
}

/// What a captured signal does while a shutdown runs.
///
/// Either way, the first captured signal never forces (it starts the shutdown, or joins one
/// that `main`, [`shutdown()`](crate::shutdown) or a panic started), and repeats within a second
/// of it are merged into it: GNU `timeout`, a terminal with a wrapper, and supervisors that
/// retry all deliver one request twice.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// // Signals during the shutdown are ignored: only its deadline ends it.
/// let exit = graceful::Builder::new()
///     .second_signal(graceful::SecondSignal::Ignore)
///     .run(async {});
/// assert_eq!(exit.code(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecondSignal {
    /// A signal more than a second after the first ends the process at once (the default).
    ///
    /// The report so far is written, and the status is the one of that signal.
    #[default]
    Force,
    /// Signals during a shutdown are ignored; the deadline and the watchdog end it.
    Ignore,
}

/// When systemd is told that start-up is done (`READY=1`), under a `Type=notify` unit.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// // A program with nothing to prepare before it serves: ready as soon as `main` first waits.
/// let exit = graceful::Builder::new()
///     .signals([])
///     .notify_ready(graceful::NotifyReady::Auto)
///     .run(async { tokio::task::yield_now().await });
/// assert_eq!(exit.code(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyReady {
    /// When the program calls [`ready()`](crate::ready) (the default).
    #[default]
    Manual,
    /// The first time `main` awaits: start-up is what `main` does before it first waits.
    Auto,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) flavor: Flavor,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) blocking_threads: Option<usize>,
    pub(crate) grace: Duration,
    /// As given: checked against the other options by name, resolved when the run starts.
    pub(crate) signal_names: Vec<&'static str>,
    pub(crate) run_forever: bool,
    pub(crate) stop_on_panic: bool,
    pub(crate) stop_on_error: bool,
    pub(crate) signal_exit_code: Option<u8>,
    pub(crate) drain_delay: Duration,
    pub(crate) dump_signal: Option<&'static str>,
    pub(crate) second_signal: SecondSignal,
    /// Whether this run may end the process (death by a signal, the watchdog's forced exit):
    /// not under `#[graceful::test]`, where the harness owns the process.
    pub(crate) exits_process: bool,
    /// Send systemd's `READY=1` the first time `main` awaits.
    pub(crate) notify_ready_auto: bool,
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) start_paused: bool,
    /// As given, resolved when the run starts, like the signals.
    pub(crate) upgrade_signal: Option<&'static str>,
    pub(crate) upgrade_timeout: Duration,
    /// What an upgrade starts instead of this program again with its arguments.
    pub(crate) upgrade_command: Option<Command>,
}

impl Default for Config {
    /// The defaults of every option: those of `Builder::new()` and of the bare attribute.
    fn default() -> Config {
        Config {
            flavor: Flavor::MultiThread,
            worker_threads: None,
            blocking_threads: None,
            grace: graceful_options::DEFAULT_GRACE,
            signal_names: signal::DEFAULT_SIGNALS.to_vec(),
            run_forever: false,
            stop_on_panic: false,
            stop_on_error: false,
            signal_exit_code: None,
            drain_delay: Duration::ZERO,
            dump_signal: None,
            second_signal: SecondSignal::Force,
            exits_process: true,
            notify_ready_auto: false,
            start_paused: false,
            upgrade_signal: None,
            upgrade_timeout: graceful_options::DEFAULT_UPGRADE_TIMEOUT,
            upgrade_command: None,
        }
    }
}

impl Config {
    /// The checks of combinations, which no single setting can make: the first that fails, in
    /// the attribute's words.
    pub(crate) fn check(&self) -> Result<(), String> {
        let current_thread = self.flavor == Flavor::CurrentThread;
        options::check_worker_threads_flavor(current_thread, self.worker_threads.is_some())?;
        options::check_start_paused_flavor(current_thread, self.start_paused)?;
        options::check_drain_delay(self.drain_delay, self.grace)?;
        if let Some(dump) = self.dump_signal {
            options::check_dump_not_in_signals(dump, self.signal_names.iter().copied())?;
        }
        if let Some(upgrade) = self.upgrade_signal {
            let signals = self.signal_names.iter().copied();
            options::check_upgrade_signal_free(upgrade, signals, self.dump_signal)?;
        }
        Ok(())
    }

    /// A runtime that captures nothing and never ends the process: a test's, or what a thread of
    /// a runtime that has ended sees.
    pub(crate) fn for_test(&mut self) {
        self.signal_names.clear();
        self.upgrade_signal = None;
        self.exits_process = false;
    }

    /// The signals of this platform that start a shutdown.
    pub(crate) fn signals(&self) -> Vec<Signal> {
        self.signal_names
            .iter()
            .filter_map(|name| signal::resolve(name))
            .collect()
    }

    /// The signal that dumps the tasks, on a platform that has it.
    pub(crate) fn dump(&self) -> Option<Signal> {
        self.dump_signal.and_then(signal::resolve)
    }

    /// The signal that starts an upgrade, on a platform that has it.
    pub(crate) fn upgrade(&self) -> Option<Signal> {
        self.upgrade_signal.and_then(signal::resolve)
    }
}

/// What an upgrade starts.
#[derive(Clone, Debug)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) struct Command {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
}
