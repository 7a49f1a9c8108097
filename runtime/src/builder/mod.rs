//! `Builder`: the settings of a graceful runtime, checked as they are set, and `run`, which
//! checks their combination and hands them to one run (`run.rs`). `#[graceful::main]` expands to
//! it.

use std::future::Future;
use std::panic::Location;
use std::process::Termination;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Flavor, NotifyReady, SecondSignal};
use crate::exit::Exit;
use crate::handle::{self, Handle};
use crate::report::Report;
use crate::signal::Signal;
use graceful_options as options;

mod upgrade;

/// Configures and runs a graceful runtime: the code form of `#[graceful::main]`.
///
/// [`run`](Builder::run) runs a future under it and returns the exit status. Everything the
/// attribute can set, the builder can set too, under the same names.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::time::Duration;
///
/// let exit = graceful::Builder::new()
///     .flavor(graceful::Flavor::CurrentThread)
///     .grace(Duration::from_secs(5))
///     .run(async {
///         graceful::spawn_service("worker", graceful::shutdown_requested());
///         Ok::<(), std::io::Error>(())
///     });
/// assert_eq!(exit.code(), 0);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Builder does nothing until `run` is called"]
pub struct Builder {
    config: Config,
    /// What [`handle`](Builder::handle) hands out, bound to this builder's first run.
    handle: Arc<handle::Inner>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

/// A setting the option table rejects: the attribute's compile error, word for word.
#[track_caller]
fn reject(checked: Result<(), String>) {
    if let Err(message) = checked {
        panic!("graceful::Builder: {message}");
    }
}

impl Builder {
    /// Creates a builder with the defaults: multi-thread, a 25 s grace, SIGINT and SIGTERM.
    ///
    /// On Windows the default signals are the console's Ctrl-C, Ctrl-Break, close and shutdown
    /// events.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // `signals([])`: only `graceful::shutdown()` or `main` returning end this one.
    /// let exit = graceful::Builder::new().signals([]).run(async {});
    /// assert_eq!(exit.code(), 0);
    /// ```
    pub fn new() -> Builder {
        Builder {
            handle: handle::Inner::new(),
            config: Config::default(),
        }
    }

    /// Sets the tokio runtime flavor (default [`Flavor::MultiThread`]).
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
    ///         assert_eq!(graceful::spawn(async { std::thread::current().id() }).await.unwrap(), here);
    ///     });
    /// ```
    #[track_caller]
    pub fn flavor(mut self, flavor: Flavor) -> Builder {
        self.config.flavor = flavor;
        self
    }

    /// Sets the number of worker threads of a multi-thread runtime (default: one per core).
    ///
    /// # Panics
    ///
    /// If `n` is 0. `run` panics if it is set with [`Flavor::CurrentThread`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).worker_threads(1).run(async {
    ///     let a = graceful::spawn(async { std::thread::current().id() }).await.unwrap();
    ///     let b = graceful::spawn(async { std::thread::current().id() }).await.unwrap();
    ///     assert_eq!(a, b, "one worker runs every task");
    /// });
    /// ```
    #[track_caller]
    pub fn worker_threads(mut self, n: usize) -> Builder {
        reject(options::check_threads("worker_threads", n));
        self.config.worker_threads = Some(n);
        self
    }

    /// Caps the number of blocking-pool threads (default 512, tokio's).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).blocking_threads(1).run(async {
    ///     let first = graceful::spawn_blocking("a", |_| std::thread::current().id());
    ///     let second = graceful::spawn_blocking("b", |_| std::thread::current().id());
    ///     assert_eq!(first.await.unwrap(), second.await.unwrap(), "one pool thread");
    /// });
    /// ```
    #[track_caller]
    pub fn blocking_threads(mut self, n: usize) -> Builder {
        reject(options::check_threads("blocking_threads", n));
        self.config.blocking_threads = Some(n);
        self
    }

    /// Sets the shutdown's time budget, from the first trigger to the exit (default 25 s).
    ///
    /// # Panics
    ///
    /// If `grace` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// graceful::Builder::new()
    ///     .signals([])
    ///     .grace(Duration::from_secs(2))
    ///     .run(async {
    ///         graceful::shutdown();
    ///         let left = graceful::deadline().unwrap() - tokio::time::Instant::now();
    ///         assert!(left <= Duration::from_secs(2));
    ///     });
    /// ```
    #[track_caller]
    pub fn grace(mut self, grace: Duration) -> Builder {
        reject(options::check_grace(grace));
        self.config.grace = grace;
        self
    }

    /// Sets the signals that start a shutdown (default SIGINT and SIGTERM; `[]` for none).
    ///
    /// Unix signals ([`Signal::SIGINT`], [`Signal::SIGTERM`], …) or, on Windows, console events
    /// ([`Signal::CTRL_C`], …); those of the other platform are ignored. With `[]` only
    /// [`shutdown()`](crate::shutdown) and `main` returning end the program.
    ///
    /// # Panics
    ///
    /// On a signal given twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use graceful::Signal;
    ///
    /// // SIGHUP too (a config reload that restarts the program); CTRL_BREAK is ignored off Windows.
    /// let exit = graceful::Builder::new()
    ///     .signals([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::CTRL_BREAK])
    ///     .run(async {});
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn signals<I>(mut self, signals: I) -> Builder
    where
        I: IntoIterator<Item = Signal>,
    {
        let names: Vec<&'static str> = signals.into_iter().map(|s| s.name).collect();
        if let Err((_, message)) = options::check_signals(names.iter().copied()) {
            reject(Err(message));
        }
        self.config.signal_names = names;
        self
    }

    /// Keeps the program running after `main` returns successfully, until a signal or
    /// [`shutdown()`](crate::shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let outlived = Arc::new(AtomicBool::new(false));
    /// let flag = outlived.clone();
    /// graceful::Builder::new().signals([]).run_forever(true).run(async move {
    ///     graceful::spawn_service("worker", async move {
    ///         tokio::task::yield_now().await;
    ///         flag.store(!graceful::tasks().iter().any(|t| t.name == "main"), Ordering::SeqCst);
    ///         graceful::shutdown();
    ///     });
    ///     // Returning does not end the program.
    /// });
    /// assert!(outlived.load(Ordering::SeqCst));
    /// ```
    #[track_caller]
    pub fn run_forever(mut self, yes: bool) -> Builder {
        self.config.run_forever = yes;
        self
    }

    /// A panic in any tracked task starts a shutdown and makes the exit status 101.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let exit = graceful::Builder::new().signals([]).stop_on_panic(true).run(async {
    ///     graceful::spawn(async { panic!("a worker failed") });
    ///     graceful::shutdown_requested().await;
    /// });
    /// assert_eq!(exit.code(), 101);
    /// ```
    #[track_caller]
    pub fn stop_on_panic(mut self, yes: bool) -> Builder {
        self.config.stop_on_panic = yes;
        self
    }

    /// Makes a failing service start a shutdown with exit status 1; without it the failure is only
    /// reported.
    ///
    /// A service fails when it returns `Err` or a failing `ExitCode`. This is what
    /// [tokio-graceful-shutdown](https://docs.rs/tokio-graceful-shutdown) and .NET's hosted
    /// services do.
    ///
    /// It is meant for long-lived services, whose failure means the program cannot go on: a
    /// queue consumer, a database driver, the accept loop. Not for per-request or per-connection
    /// work: a connection served as a service that returns its I/O error would stop the whole
    /// server the first time a client leaves mid-request. Serve such work with
    /// [`spawn`](crate::spawn), or as a service whose output is `()`, and log its errors there;
    /// for a subsystem whose failure should stop only itself, see
    /// [`Scope::isolated`](crate::Scope::isolated).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let exit = graceful::Builder::new().signals([]).stop_on_error(true).run(async {
    ///     graceful::spawn_service("loader", async { Err::<(), _>("no such table") });
    ///     graceful::shutdown_requested().await;
    ///     assert_eq!(
    ///         graceful::reason(),
    ///         Some(graceful::Reason::Failed { task: "loader".into() })
    ///     );
    /// });
    /// assert_eq!(exit.code(), 1);
    /// ```
    #[track_caller]
    pub fn stop_on_error(mut self, yes: bool) -> Builder {
        self.config.stop_on_error = yes;
        self
    }

    /// After a signal-triggered shutdown, exit with `code` instead of dying by the signal.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // Only a signal-triggered shutdown uses the code; here `main` ends the program.
    /// let exit = graceful::Builder::new().signal_exit_code(0).run(async {
    ///     graceful::shutdown_with_code(4);
    /// });
    /// assert_eq!(exit.code(), 4);
    /// ```
    #[track_caller]
    pub fn signal_exit_code(mut self, code: u8) -> Builder {
        self.config.signal_exit_code = Some(code);
        self
    }

    /// Sets a first part of the grace in which readiness probes fail but nothing is cancelled yet.
    ///
    /// During it [`is_shutting_down()`](crate::is_shutting_down) is true.
    ///
    /// # Panics
    ///
    /// `run` panics unless it is shorter than the grace.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// graceful::Builder::new()
    ///     .signals([])
    ///     .drain_delay(Duration::from_millis(50))
    ///     .run(async {
    ///         graceful::shutdown();
    ///         // A readiness probe fails from now on, but nobody has been told to stop yet.
    ///         assert!(graceful::is_shutting_down());
    ///         assert!(!graceful::token().is_cancelled());
    ///         graceful::shutdown_requested().await;
    ///         assert!(graceful::token().is_cancelled());
    ///     });
    /// ```
    #[track_caller]
    pub fn drain_delay(mut self, delay: Duration) -> Builder {
        self.config.drain_delay = delay;
        self
    }

    /// Sets a Unix signal that prints the [`tasks()`](crate::tasks) table to stderr.
    ///
    /// The program keeps running. One of [`Signal::SIGUSR1`], [`Signal::SIGUSR2`] or
    /// [`Signal::SIGQUIT`]; ignored on Windows.
    ///
    /// # Panics
    ///
    /// On another signal.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // `kill -USR1 <pid>` prints the live tasks to stderr while this runs.
    /// let exit = graceful::Builder::new()
    ///     .dump_signal(graceful::Signal::SIGUSR1)
    ///     .run(async { graceful::spawn_service("worker", graceful::shutdown_requested()); });
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn dump_signal(mut self, signal: Signal) -> Builder {
        reject(options::check_dump_signal(signal.name));
        self.config.dump_signal = Some(signal.name);
        self
    }

    /// Sets what a signal does during a shutdown: force the exit (the default) or nothing.
    ///
    /// A repeat within a second of the first signal is merged into it either way.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// // Ctrl-C twice cannot cut this shutdown short; only its 10 s deadline can.
    /// let exit = graceful::Builder::new()
    ///     .second_signal(graceful::SecondSignal::Ignore)
    ///     .grace(Duration::from_secs(10))
    ///     .run(async {});
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn second_signal(mut self, what: SecondSignal) -> Builder {
        self.config.second_signal = what;
        self
    }

    /// Sets when systemd's `READY=1` is sent: at [`ready()`](crate::ready) (the default) or when
    /// `main` first awaits.
    ///
    /// [`NotifyReady::Manual`] waits for [`ready()`](crate::ready); [`NotifyReady::Auto`] sends it
    /// the first time `main` awaits. Nothing is sent without `NOTIFY_SOCKET`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // Without NOTIFY_SOCKET (not under systemd) this sends nothing and changes nothing.
    /// let exit = graceful::Builder::new()
    ///     .signals([])
    ///     .notify_ready(graceful::NotifyReady::Auto)
    ///     .run(async { tokio::task::yield_now().await });
    /// assert_eq!(exit.code(), 0);
    /// ```
    #[track_caller]
    pub fn notify_ready(mut self, when: NotifyReady) -> Builder {
        self.config.notify_ready_auto = when == NotifyReady::Auto;
        self
    }

    /// Starts the tokio clock paused, for tests whose timers should fire at once (what
    /// `#[graceful::test(start_paused = true)]` sets).
    ///
    /// Needs the crate's `test-util` feature, as tokio's own paused clock needs tokio's.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::{Duration, Instant};
    ///
    /// let started = Instant::now();
    /// graceful::Builder::new()
    ///     .signals([])
    ///     .flavor(graceful::Flavor::CurrentThread)
    ///     .start_paused(true)
    ///     .run(async { tokio::time::sleep(Duration::from_secs(3600)).await });
    /// assert!(started.elapsed() < Duration::from_secs(60), "the hour passed on a paused clock");
    /// ```
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    #[track_caller]
    pub fn start_paused(mut self, yes: bool) -> Builder {
        self.config.start_paused = yes;
        self
    }

    /// Returns a [`Handle`] to the runtime this builder's first [`run`](Builder::run) starts.
    ///
    /// It is usable from any thread before, during and after that run.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// let handle = builder.handle();
    /// assert!(!handle.is_shutting_down(), "not started yet");
    /// handle.shutdown(); // remembered: the run starts and shuts down at once
    /// builder.run(async { graceful::shutdown_requested().await });
    /// assert_eq!(handle.reason(), Some(graceful::Reason::Requested));
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::from_inner(self.handle.clone())
    }

    /// For `#[graceful::test]`: no signal capture, and the process is never ended by us.
    #[doc(hidden)]
    #[track_caller]
    pub fn __for_test(mut self) -> Builder {
        self.config.for_test();
        self
    }

    /// For unit tests: the settings of a runtime that captures nothing and never ends the process.
    #[cfg(test)]
    pub(crate) fn into_config(self) -> Config {
        self.__for_test().config
    }

    /// Runs `future` as `main` on a new runtime, then the shutdown, and returns the [`Exit`];
    /// blocks the thread.
    ///
    /// `future` runs as the service `main`. The [`Exit`] is the status the crate docs'
    /// ["Exit status"](https://docs.rs/graceful-main/latest/graceful/#exit-status) describes.
    ///
    /// The future runs on this thread (`block_on`), so it need not be `Send`. `run` returns on
    /// every normal path, a signal-triggered shutdown included: the `Exit` then owes a death by
    /// that signal, which it carries out when returned from `main` (converting or dropping it
    /// loses it: see [`Exit`]). Only the forced exits (a second signal, the watchdog) end the
    /// process from inside. The watchdog is disarmed once `run` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let exit = graceful::Builder::new().signals([]).run(async {
    ///     Err::<(), _>("no config file")
    /// });
    /// // std's report: `Error: "no config file"` on stderr, status 1.
    /// assert_eq!(exit.code(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// If the settings conflict: `worker_threads` with the current_thread flavor, `start_paused`
    /// with the multi_thread one, a `drain_delay` not shorter than the `grace`, a `dump_signal`
    /// that is also in `signals`, an `upgrade_signal` that is also in `signals` or is the
    /// `dump_signal`. The message is the one `#[graceful::main]` gives at compile
    /// time for the same settings. A panic in `future` does not unwind out of `run`: it is
    /// reported and the status is 101.
    #[track_caller]
    pub fn run<F>(self, future: F) -> Exit
    where
        F: Future,
        F::Output: Termination,
    {
        self.run_at(future, Location::caller()).0
    }

    /// Runs like [`run`](Self::run), and also returns the shutdown's [`Report`].
    ///
    /// The report says what was aborted, abandoned, failed or panicked, and which hooks did not
    /// run: for programs that embed the runtime and decide themselves what a shutdown that did not
    /// end well means.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let (exit, report) = graceful::Builder::new().signals([]).run_with_report(async {
    ///     let worker = graceful::spawn(async { panic!("a worker failed") });
    ///     assert!(worker.await.unwrap_err().is_panic());
    /// });
    /// // Without `stop_on_panic` the panic does not change the status; the report has it.
    /// assert_eq!(exit.code(), 0);
    /// assert_eq!(report.panicked.len(), 1);
    /// assert!(!report.is_clean());
    /// ```
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run).
    #[track_caller]
    pub fn run_with_report<F>(self, future: F) -> (Exit, Report)
    where
        F: Future,
        F::Output: Termination,
    {
        self.run_at(future, Location::caller())
    }

    /// For `#[graceful::test]`: runs like [`run`](Self::run), then fails the test if the status
    /// is not success or if the report is not clean.
    #[doc(hidden)]
    #[track_caller]
    pub fn __run_test<F>(self, future: F)
    where
        F: Future,
        F::Output: Termination,
    {
        let (status, report) = self.__for_test().run_at(future, Location::caller());
        assert!(
            report.is_clean(),
            "the test left work that panicked, failed or did not stop by the deadline:\n  {}",
            report.problems().join("\n  ")
        );
        assert!(
            status.code() == 0,
            "the test failed: its body returned an error or panicked ({status:?})"
        );
    }

    #[track_caller]
    fn run_at<F>(self, future: F, location: &'static Location<'static>) -> (Exit, Report)
    where
        F: Future,
        F::Output: Termination,
    {
        reject(self.config.check());
        // A clone of a builder that has run already gets a handle of its own.
        let public = if self.handle.is_unbound() {
            self.handle
        } else {
            handle::Inner::new()
        };
        // The one generic step: `main`'s value reported as std reports it, and the future boxed,
        // so everything after it is compiled once, in this crate, not in every program.
        let main = Box::pin(async move { future.await.report() });
        crate::run::run(self.config, public, main, location)
    }
}
