//! The settings of a restart without downtime.

use std::time::Duration;

use super::{reject, Builder};
use crate::config::Command;
use crate::signal::Signal;
use graceful_options as options;

impl Builder {
    /// Sets the Unix signal (SIGHUP, SIGUSR1 or SIGUSR2) that starts a restart without downtime.
    ///
    /// On that signal the program does what [`upgrade()`](crate::upgrade) does. It must be neither
    /// one of the [`signals`](Builder::signals) nor the [`dump_signal`](Builder::dump_signal); it
    /// is ignored on Windows.
    ///
    /// # Panics
    ///
    /// On another signal; at [`run`](Builder::run), if the signal is also in `signals` or is
    /// the `dump_signal`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // `kill -USR2 <pid>` (systemd: `ExecReload=kill -USR2 $MAINPID`) replaces the process.
    /// let exit = graceful::Builder::new()
    ///     .upgrade_signal(graceful::Signal::SIGUSR2)
    ///     .run(async {});
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn upgrade_signal(mut self, signal: Signal) -> Builder {
        reject(options::check_upgrade_signal(signal.name));
        self.config.upgrade_signal = Some(signal.name);
        self
    }

    /// Sets how long an upgrade waits for the new process to be ready (default 60 s).
    ///
    /// Past it, the old process kills the new one and goes on serving.
    ///
    /// # Panics
    ///
    /// On zero.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// let exit = graceful::Builder::new()
    ///     .upgrade_signal(graceful::Signal::SIGHUP)
    ///     .upgrade_timeout(Duration::from_secs(10))
    ///     .run(async {});
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Builder {
        reject(options::check_upgrade_timeout(timeout));
        self.config.upgrade_timeout = timeout;
        self
    }

    /// Sets the program and arguments an upgrade starts, instead of this executable and its
    /// arguments.
    ///
    /// By default an upgrade starts this program's executable, as resolved when `run` started, with
    /// the arguments it was started with. The environment is this process's either way.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // A deploy that installs each release in a directory of its own, behind a symlink.
    /// let exit = graceful::Builder::new()
    ///     .upgrade_signal(graceful::Signal::SIGUSR2)
    ///     .upgrade_command("/srv/app/current/bin/app", ["--config", "/etc/app.toml"])
    ///     .run(async {});
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn upgrade_command<I>(mut self, program: impl Into<std::path::PathBuf>, args: I) -> Builder
    where
        I: IntoIterator,
        I::Item: Into<std::ffi::OsString>,
    {
        self.config.upgrade_command = Some(Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        });
        self
    }
}
