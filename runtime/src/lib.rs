//! The runtime of [`graceful-main`](https://docs.rs/graceful-main): signal capture, the task
//! registry, the shutdown sequence, the report and the exit.
//!
//! Depend on `graceful-main`, not on this crate: it re-exports everything here, and its
//! `#[graceful::main]` expands to [`Builder`].

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blocking;
mod builder;
mod config;
mod context;
mod deadline;
mod exit;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod inherited;
#[cfg(feature = "net")]
mod listen;
mod phase;
mod reason;
mod registry;
mod report;
mod run;
mod runtime;
mod scope;
mod shutdown;
mod signal;
mod signals;
mod spawn;
mod stop_flag;
mod supervise;
mod systemd;
mod task;
mod taskdump;
mod tracked;
mod upgrade;
mod watchdog;

pub use blocking::spawn_blocking;
pub use builder::Builder;
pub use config::{Flavor, NotifyReady, SecondSignal};
pub use exit::Exit;
pub use handle::{handle, EnterGuard, Handle};
#[cfg(all(feature = "net", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "net", unix))))]
pub use listen::listen_unix;
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use listen::{listen_tcp, listen_tcp_named};
pub use reason::Reason;
pub use report::{Failure, Report};
pub use scope::{current_scope, scope, Scope, ScopeFinished, ScopeShutdown};
pub use shutdown::{
    deadline, is_shutting_down, on_shutdown, reason, shutdown, shutdown_requested,
    shutdown_with_code, token, ShutdownRequested,
};
pub use signal::{ParseSignalError, Signal};
pub use spawn::{shutdown_waits_for, spawn, spawn_service, ServiceOutput, ShutdownWaitsFor};
pub use stop_flag::StopFlag;
pub use supervise::{supervise, Restart, Supervisor, SupervisorStopped};
pub use task::{TaskInfo, TaskKind};
pub use upgrade::{is_upgrade, upgrade, UpgradeError};

/// Returns a snapshot of the live tracked work: name, kind, spawn location and age of each.
///
/// The work of this thread's graceful runtime, as asyncio's `all_tasks()` lists it; `main` is in it
/// as the service `main`.
///
/// Inside a [`Scope`], the work of that scope and the scopes below it. Outside a graceful
/// runtime: empty.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     graceful::spawn_service("flusher", graceful::shutdown_requested());
///     let names: Vec<_> = graceful::tasks().into_iter().map(|t| t.name).collect();
///     assert!(names.contains(&"flusher".into()));
///     assert!(names.contains(&"main".into()));
/// });
/// ```
pub fn tasks() -> Vec<TaskInfo> {
    if let Some(inner) = scope::current() {
        return Scope { inner }.tasks();
    }
    context::with(|shared| shared.map(|s| s.registry().snapshot()).unwrap_or_default())
}

/// Tells whoever waits for start-up that it is done: systemd, and the old process of an upgrade.
///
/// systemd hears `READY=1` on `NOTIFY_SOCKET` when it is set (a `Type=notify` unit); only the
/// first call sends. In the new process of a restart without downtime, the old process hears it
/// and hands over: without `ready()` (or `notify_ready = "auto"`) the new process is killed at
/// `upgrade_timeout`. Sockets passed to the process that the program has not claimed by now are
/// closed.
///
/// With `notify_ready = "auto"` the runtime sends it itself the first time `main` awaits, which
/// fits programs whose start-up is everything before their first `.await` on work.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// # #[cfg(unix)] {
/// use std::os::unix::net::UnixDatagram;
/// use std::time::Duration;
///
/// // What systemd does for a `Type=notify` unit: a socket, named in `NOTIFY_SOCKET`.
/// let path = std::env::temp_dir().join(format!("graceful-notify-{}", std::process::id()));
/// let manager = UnixDatagram::bind(&path).unwrap();
/// manager.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
/// std::env::set_var("NOTIFY_SOCKET", &path);
///
/// graceful::Builder::new().signals([]).run(async {
///     // Bind sockets, open pools... then:
///     graceful::ready();
/// });
/// let mut message = [0; 64];
/// let n = manager.recv(&mut message).unwrap();
/// assert_eq!(&message[..n], b"READY=1");
/// std::fs::remove_file(&path).unwrap();
/// # }
/// ```
pub fn ready() {
    context::with(|shared| {
        if let Some(shared) = shared {
            shared.ready();
        }
    })
}
