//! Graceful shutdown for tokio programs.
//!
//! Add it with `cargo add graceful-main` (the package's name; its library, and the name in code,
//! is `graceful`).
//!
//! Write `#[graceful::main]` on `async fn main` and get signal capture, a registry of the tasks you
//! spawn, a cancel-then-drain shutdown with one grace period, shutdown hooks, a join of the
//! blocking pool, a report that names whatever did not stop, and an exit that always comes.
//!
//! ```no_run
//! #[graceful::main(grace = "10s")]
//! async fn main() -> std::io::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8888").await?;
//!     loop {
//!         tokio::select! {
//!             _ = graceful::shutdown_requested() => break,
//!             accepted = listener.accept() => {
//!                 let (socket, _) = accepted?;
//!                 // Cancelled (dropped at its next `.await`) when the shutdown starts.
//!                 graceful::spawn(async move { drop(socket) });
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # The model
//!
//! Four kinds of tracked work, one deadline (trigger time + `grace`):
//!
//! | call | at shutdown |
//! |---|---|
//! | [`spawn`] | **cancelled**: dropped at its next `.await` as soon as the shutdown starts |
//! | [`spawn_service`] (and `main` itself) | **drained**: expected to notice [`shutdown_requested()`] and return; aborted at the deadline |
//! | [`shutdown_waits_for`] | **waited for**: never cancelled, even if the task awaiting it is |
//! | [`spawn_blocking`] | its [`StopFlag`] is raised; joined until the deadline, then **abandoned** and reported |
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let saved = Arc::new(AtomicBool::new(false));
//! let flag = saved.clone();
//! let exit = graceful::Builder::new()
//!     .signals([])
//!     .grace(Duration::from_secs(5))
//!     .run(async move {
//!         let cancelled = graceful::spawn(std::future::pending::<()>());
//!         let drained = graceful::spawn_service("flusher", async {
//!             graceful::shutdown_requested().await;
//!             // Clean-up after the signal still runs. A service ends or fails: its output is
//!             // `()`, a `Result` or an `ExitCode`, and a failure is reported.
//!             Ok::<_, std::io::Error>("flushed")
//!         });
//!         let protected = graceful::shutdown_waits_for(async move {
//!             graceful::shutdown_requested().await;
//!             flag.store(true, Ordering::SeqCst);
//!         });
//!         let blocking = graceful::spawn_blocking("indexer", |stop| stop.wait());
//!
//!         graceful::shutdown_with_code(3);
//!         assert!(cancelled.await.unwrap_err().is_cancelled());
//!         assert_eq!(drained.await.unwrap().unwrap(), "flushed");
//!         protected.await;
//!         blocking.await.unwrap();
//!     });
//! assert!(saved.load(Ordering::SeqCst));
//! assert_eq!(exit.code(), 3);
//! ```
//!
//! The sequence, started by the first captured signal, [`shutdown()`], `main` returning or (with
//! `stop_on_panic`) a panic: announce (tokens cancelled, flags raised), cancel `spawn` tasks, drain
//! `main`, services and protected work, run [`on_shutdown`] hooks last-registered first, abort
//! what is left at the deadline, join the blocking pool, report, exit. The first captured signal
//! starts the shutdown or joins the one running, and repeats within a second are merged into it;
//! one more than a second later forces the exit at once (unless `second_signal = "ignore"`); a
//! watchdog thread ends the process one second past the deadline whatever the
//! program does.
//!
//! # Which question to ask
//!
//! Three observers of the shutdown answer two different questions:
//!
//! | call | answers | flips |
//! |---|---|---|
//! | [`is_shutting_down()`] | has the program begun shutting down? (the readiness probe's question) | at the trigger, before any drain delay, wherever it is called, in a scope too |
//! | [`shutdown_requested()`] | is it my turn to stop? (a future) | at the announce: for the root, after the drain delay; inside a scope, at that scope's turn |
//! | [`token()`] | the same, as a `CancellationToken` for libraries that take one | with [`shutdown_requested()`] |
//!
//! A [`Scope`]'s own methods are about that scope: [`Scope::is_shutting_down`] is also true once
//! its partial shutdown has begun, and [`Scope::shutdown_requested`] is its turn. A [`Handle`]
//! asks about the program from any thread.
//!
//! # Exit status
//!
//! [`Builder::run`] returns an [`Exit`] on every normal path, a signal-triggered shutdown
//! included, so a program that embeds the runtime gets its report and runs its own code after
//! `run`; returned from `main`, the `Exit` ends the process with its status. The status is
//! `main`'s value as std reports it; 101 after a panic in `main` (or in a tracked task under
//! `stop_on_panic`); after a signal, death by that signal (shell status 130 for SIGINT, 143 for
//! SIGTERM) unless `signal_exit_code` is set; [`shutdown_with_code`]'s code; 0 for the old process
//! of a restart without downtime ([`upgrade`]). When several apply: forced > panic > signal >
//! failed service > `shutdown_with_code` > upgraded > `main`'s value.
//!
//! Tasks spawned with plain `tokio::spawn` are not tracked: they are dropped when the runtime shuts
//! down at the end, after the hooks.
//!
//! # Scopes
//!
//! A `spawn` task is cancelled before services drain, which is wrong for work others depend on:
//! a database connection's driver must outlive the services that send it queries. A [`Scope`]
//! gives work its own turn: the root's own work (`main`, its tasks and services) stops first,
//! then each scope, after the scopes that [depend on it](Scope::depends_on), its own work
//! first, then its child scopes, then its hooks. Work in a scope has it as its current scope, so
//! the free functions it calls act on the scope. A scope can be shut down
//! ([`Scope::shutdown`]), aborted or [isolated](Scope::isolated) while the rest of the program
//! goes on; [`supervise`] restarts a failing service with backoff, up to a limit.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! let order = Arc::new(Mutex::new(Vec::new()));
//! let log = order.clone();
//! graceful::Builder::new().signals([]).run(async move {
//!     let db = graceful::scope("db");
//!     let (queries, mut queue) = tokio::sync::mpsc::unbounded_channel::<&str>();
//!     let driver_log = log.clone();
//!     // A plain task in its scope: cancelled only at the scope's turn, after the API drained.
//!     db.spawn(async move {
//!         while let Some(query) = queue.recv().await {
//!             driver_log.lock().unwrap().push(query);
//!         }
//!     });
//!     graceful::spawn_service("api", async move {
//!         graceful::shutdown_requested().await;
//!         queries.send("last query, sent while draining").unwrap();
//!         tokio::task::yield_now().await;
//!     });
//! });
//! assert_eq!(*order.lock().unwrap(), ["last query, sent while draining"]);
//! ```
//!
//! # Coming from aiorun
//!
//! The crate is the Rust counterpart of Python's [aiorun](https://github.com/cjrh/aiorun), and
//! keeps two of its names so its users find them: [`shutdown_waits_for`] (work the shutdown waits
//! for, never cancels) and the attribute's `uvloop_like` (an alias of `flavor`: aiorun's
//! `use_uvloop` picks the loop, this picks tokio's runtime flavor). The rest maps onto Rust's
//! words: `run(main())` is `#[graceful::main]` or [`Builder::run`]; `stop_on_unhandled_errors` is
//! `stop_on_panic`; `executor_workers` is `blocking_threads`; `timeout_task_shutdown` is `grace`,
//! one budget for the whole shutdown; `shutdown_callback` is [`on_shutdown`]; `loop.stop()` is
//! [`shutdown()`]; `asyncio.all_tasks()` is [`tasks()`]; `run_in_executor` is [`spawn_blocking`];
//! aiorun's behaviour of ignoring signals during a shutdown is `second_signal = "ignore"`, and
//! keeping the loop running after `main` returns is `run_forever`. A cancelled task is not sent a
//! `CancelledError`: its future is dropped at its next `.await`, and its `Drop`s run.
//!
//! # Restart without downtime
//!
//! On Unix a program can replace itself without refusing a connection: take listeners from
//! [`listen_tcp`] (or [`listen_tcp_named`], [`listen_unix`]; the `net` feature), call [`ready()`]
//! once it can serve,
//! and set `upgrade_signal` (or call [`upgrade()`]). The new process gets the listeners and
//! [`is_upgrade()`] is true in it; once it is ready, the old one shuts down with
//! [`Reason::Upgraded`] and exits 0. A new process that exits or is not ready within
//! `upgrade_timeout` is killed and the old one serves on; [`upgrade()`] says step by step what
//! each process does.
//!
//! # Features
//!
//! - **`systemd`** (on by default): systemd's notify protocol when `NOTIFY_SOCKET` is set —
//!   `READY=1` at [`ready()`], `STOPPING=1` with `EXTEND_TIMEOUT_USEC` when the shutdown starts,
//!   `WATCHDOG=1` every half `WatchdogSec`, `MAINPID=` after an upgrade. It adds no dependency
//!   and costs nothing where `NOTIFY_SOCKET` is unset; without it [`ready()`] only closes the
//!   passed sockets nobody claimed and tells an upgrading parent. Socket activation
//!   ([`listen_tcp`] taking the sockets of a `.socket` unit) does not need it.
//! - **`net`**: [`listen_tcp`], [`listen_tcp_named`] and [`listen_unix`], the listeners a restart
//!   without downtime hands to the new process and that take systemd's sockets. It turns on
//!   tokio's `net` feature, which a program that serves no socket would otherwise compile for
//!   nothing (a third of tokio's build); a program that serves one has it on already. `http`
//!   turns it on.
//! - **`taskdump`**: where stuck work waits. When the report names stuck work — the first
//!   waiting line, the abort at the deadline, the `dump_signal` table — it takes one task dump
//!   from tokio and shows under each task its await chain, the program's own frames first and
//!   tokio's and std's folded into one line ([`TaskInfo::chain`], in [`Report::aborted`] too):
//!
//!   ```text
//!   graceful: aborted at the deadline: service "flusher" at src/main.rs:21:5 (age 25.0s)
//!       app::flusher at src/main.rs:14
//!       app::flush_to_db at src/main.rs:9
//!       … 2 frames in tokio, innermost tokio::time::sleep::Sleep::poll_elapsed
//!   ```
//!
//!   tokio dumps only with `--cfg tokio_unstable`, on Linux (x86, x86_64, aarch64, s390x), so
//!   turn it on in `.cargo/config.toml` beside the feature:
//!
//!   ```toml
//!   [build]
//!   rustflags = ["--cfg", "tokio_unstable"]
//!   ```
//!
//!   Without the cfg, or on another platform, the feature compiles and changes nothing. The dump
//!   is bounded: a runtime whose thread is blocked cannot be dumped within 250 ms (500 ms on a
//!   multi-threaded runtime, whose dump itself waits up to 250 ms for its workers), and the
//!   report then says so in one line and goes on as without the feature. Nor is a dump asked of
//!   a multi-threaded runtime one of whose workers has been in one poll for over 100 ms: tokio's
//!   dump would stop the other workers to wait for it. The abort's dump is asked for that bound
//!   before the deadline, so the abort is not late, and the exit a second past the deadline never
//!   waits for a dump. Frames need the binary's debug info (the default of a debug build;
//!   `debug = "line-tables-only"` is enough in release). With the feature on, tokio instruments
//!   every poll and the guard above notes when each poll starts and ends: a task's spawn, one
//!   poll and its end cost about 250 instructions more (some 13% of a bare `tokio::spawn`), ours
//!   and tokio's alike.
//! - **`test-util`**: [`Builder::start_paused`] and `#[graceful::test(start_paused = true)]`, a
//!   paused tokio clock for tests, as tokio's own `test-util` feature gives `#[tokio::test]`.
//! - **`http`**: [`http::serve`], which serves an axum `Router` or any tower service over HTTP/1.1
//!   and HTTP/2 (h2c) and loses no request at a shutdown or an upgrade. It adds hyper,
//!   hyper-util and tower-service (all in axum's dependency tree); without it none of them is
//!   built.
//!
//! Platform-specific items say so: [`listen_unix`] is Unix-only, and so is a restart without
//! downtime ([`upgrade()`] returns an error elsewhere).

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's code blocks are doctests, so the examples it shows compile and run.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Runs `async fn main` under a graceful runtime: signals captured, tasks tracked, shutdown
/// bounded.
///
/// The crate docs describe [the shutdown](crate#the-model) and [the exit
/// status](crate#exit-status).
///
/// The function must be `async`, take no parameters and have no generics; its return type may be
/// anything implementing [`Termination`](std::process::Termination) (`()`, `Result<(), E: Debug>`,
/// `ExitCode`). The expanded function returns [`Exit`], which ends the process with the status
/// (dying by the signal that started the shutdown). An attributed `async fn start()` called from a
/// plain `fn main() -> ExitCode` fits with `.into()`, but the conversion loses the death by the
/// signal: the status becomes 128 + its number (see [`Exit`]). Like `#[tokio::main]`, the body need
/// not be `Send`: it runs on the main thread, as the service named `main` (drained at shutdown,
/// never dropped at the cancel step).
///
/// # Options
///
/// Every option `x = v` is also the [`Builder`] setter `x(v)`, with the same values (but `crate`
/// and `uvloop_like`, which are the attribute's own). Every mistake — an unknown or repeated
/// option, a bad value, a conflicting pair — is a compile error on the offending token.
///
/// | option | values | default | meaning |
/// |---|---|---|---|
/// | `flavor` | `"multi_thread"`, `"current_thread"` | `"multi_thread"` | tokio's runtime flavor |
/// | `uvloop_like` | as `flavor` | — | an alias of `flavor`, under aiorun's name (its `use_uvloop` picks the loop); setting both is an error |
/// | `worker_threads` | integer > 0 | tokio's default | worker threads of `multi_thread`; an error with `current_thread` |
/// | `blocking_threads` | integer > 0 | `512` | the cap of the blocking pool (aiorun's `executor_workers`) |
/// | `grace` | a duration: `"250ms"`, `"10s"`, `"2m"`, `"1m30s"` | `"25s"` | the one shutdown budget, from the first trigger to the exit |
/// | `signals` | names, e.g. `["SIGINT", "SIGTERM", "SIGHUP"]`; `[]` for none | Unix `["SIGINT", "SIGTERM"]`; Windows `["CTRL_C", "CTRL_BREAK", "CTRL_CLOSE", "CTRL_SHUTDOWN"]` | which signals start a shutdown (Unix: SIGINT SIGTERM SIGHUP SIGQUIT SIGUSR1 SIGUSR2; Windows: CTRL_C CTRL_BREAK CTRL_CLOSE CTRL_LOGOFF CTRL_SHUTDOWN; the other platform's names are ignored) |
/// | `run_forever` | bool | `false` | after `main` returns `Ok`, keep running tracked work until a signal or [`shutdown()`] |
/// | `stop_on_panic` | bool | `false` | a panic in any tracked task starts a shutdown; status 101 |
/// | `stop_on_error` | bool | `false` | a service that fails (`Err`, a failing `ExitCode`) starts a shutdown; status 1. Without it the failure is still reported |
/// | `signal_exit_code` | `0..=255` | unset | after a signal-triggered shutdown, exit with this code instead of dying by the signal |
/// | `drain_delay` | a duration | `"0s"` | a first window of the grace in which [`is_shutting_down()`] is true but nothing is cancelled yet |
/// | `dump_signal` | `"SIGUSR1"`, `"SIGUSR2"`, `"SIGQUIT"` | unset | print the live [`tasks()`] to stderr on that signal and keep running |
/// | `notify_ready` | `"auto"`, `"manual"` | `"manual"` | when systemd hears `READY=1`: at [`ready()`], or the first time `main` awaits |
/// | `second_signal` | `"force"`, `"ignore"` | `"force"` | what a captured signal more than a second after the first does during a shutdown |
/// | `upgrade_signal` | `"SIGHUP"`, `"SIGUSR1"`, `"SIGUSR2"`; not in `signals`, not the `dump_signal` | unset | start a restart without downtime ([`upgrade()`]) on that signal |
/// | `upgrade_timeout` | a duration | `"60s"` | how long the old process waits for the new one to be ready |
/// | `crate` | a path string | `"::graceful"` | where this crate is, for crates that re-export it |
///
/// # Equivalent code without the attribute
///
/// ```
/// #[graceful::main(flavor = "current_thread", grace = "10s", signals = ["SIGTERM"])]
/// async fn main() -> Result<(), std::io::Error> {
///     graceful::spawn_service("worker", graceful::shutdown_requested());
///     Ok(())
/// }
/// ```
///
/// expands to what you could write yourself:
///
/// ```
/// use std::time::Duration;
///
/// fn main() -> graceful::Exit {
///     graceful::Builder::new()
///         .flavor(graceful::Flavor::CurrentThread)
///         .grace(Duration::from_secs(10))
///         .signals([graceful::Signal::SIGTERM])
///         .run(async move {
///             graceful::spawn_service("worker", graceful::shutdown_requested());
///             Ok::<(), std::io::Error>(())
///         })
/// }
/// ```
#[doc(inline)]
pub use graceful_macros::main;

/// Runs an async test under a graceful runtime and fails it if any work panicked, failed or
/// outlived the grace.
///
/// After the body, the shutdown sequence runs, and the test fails unless its [`Report`] is clean:
/// nothing aborted at the deadline or abandoned, no panic (a `Drop` of cancelled work included), no
/// failed service, every hook run. A leak detector for tests.
///
/// No signals are captured and the process is never ended by it.
///
/// # Options
///
/// Those of [`main`] that make sense in a test, with the same values, and `start_paused`:
///
/// | option | default in a test |
/// |---|---|
/// | `flavor` | `"current_thread"`, as `#[tokio::test]` |
/// | `uvloop_like` | — (an alias of `flavor`) |
/// | `worker_threads` | tokio's default |
/// | `blocking_threads` | `512` |
/// | `grace` | `"25s"` |
/// | `stop_on_panic` | `false` |
/// | `stop_on_error` | `false` |
/// | `drain_delay` | `"0s"` |
/// | `start_paused` | `false`; `true` starts tokio's clock paused and needs this crate's `test-util` feature, as `#[tokio::test]` needs tokio's |
/// | `crate` | `"::graceful"` |
///
/// # Examples
///
/// (`no_run`: a `#[test]` function exists only under `cargo test`.)
///
/// ```no_run
/// #[graceful::test(grace = "1s")]
/// async fn service_stops_when_asked() {
///     graceful::spawn_service("worker", graceful::shutdown_requested());
/// }
/// ```
#[doc(inline)]
pub use graceful_macros::test;

pub use graceful_runtime::{
    current_scope, deadline, handle, is_shutting_down, is_upgrade, on_shutdown, ready, reason,
    scope, shutdown, shutdown_requested, shutdown_waits_for, shutdown_with_code, spawn,
    spawn_blocking, spawn_service, supervise, tasks, token, upgrade, Builder, EnterGuard, Exit,
    Failure, Flavor, Handle, NotifyReady, ParseSignalError, Reason, Report, Restart, Scope,
    ScopeFinished, ScopeShutdown, SecondSignal, ServiceOutput, ShutdownRequested, ShutdownWaitsFor,
    Signal, StopFlag, Supervisor, SupervisorStopped, TaskInfo, TaskKind, UpgradeError,
};

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[doc(inline)]
pub use graceful_runtime::http;
#[cfg(all(feature = "net", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "net", unix))))]
pub use graceful_runtime::listen_unix;
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use graceful_runtime::{listen_tcp, listen_tcp_named};

/// What the macros' output uses. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use graceful_runtime::{Builder, Flavor, NotifyReady, SecondSignal, Signal};

    /// Names the body's output type, so `?` inside `async move { body }` knows its target.
    pub fn main_body<T, F: Future<Output = T>>(future: F) -> F {
        future
    }

    /// `#[graceful::test]`'s runner.
    #[track_caller]
    pub fn run_test<F>(builder: Builder, future: F)
    where
        F: Future,
        F::Output: std::process::Termination,
    {
        builder.__run_test(future);
    }
}
