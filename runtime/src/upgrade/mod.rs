//! Restart without downtime: the old process starts a new copy of the program, hands it its
//! listeners, waits until it is ready, hands it the service manager, then drains and exits 0.
//!
//! The old process's side, in order:
//!
//! 1. [`upgrade()`] (or the `upgrade_signal`) is refused at once when an upgrade or a shutdown is
//!    running, under PID 1, outside the program's run, or off Unix.
//! 2. The new process is the executable resolved when `run` started (after a deploy by rename,
//!    `/proc/self/exe` names the deleted old file) with the same arguments, or
//!    `Builder::upgrade_command`. It gets duplicates of the remembered listeners (see
//!    [`crate::listen`]) and one end of a socket pair, by number: between `fork` and `exec` the
//!    child only clears close-on-exec on exactly those descriptors, with `fcntl`, which neither
//!    allocates nor locks. No descriptor of the parent ever loses close-on-exec, so a spawn by
//!    another thread at the same moment inherits none of them. The environment names the
//!    numbers, each listener's request, and the parent's pid.
//! 3. A thread of ours waits up to `upgrade_timeout` for one byte on the pair: the child's
//!    `ready()`. If the child exits first, or is not ready in time, it is killed and reaped, the
//!    failure is reported, and the old process serves on. A shutdown that starts meanwhile kills
//!    it at once (see [`Upgrade::abandon`]).
//! 4. Ready: under systemd the parent sends `MAINPID=<child>` and then nothing more; the child
//!    owns the notify socket and the watchdog. The parent's shutdown starts with
//!    `Reason::Upgraded`.
//!
//! The new process's side: its environment says which descriptors are its listeners, but only if
//! the parent it names is its actual parent (`getppid`), as systemd's `LISTEN_PID` does; the
//! variables a grandchild inherits name somebody else and are ignored. Nothing is received over a
//! socket anybody could connect to, so no other local user can hand the process a descriptor.

use std::fmt;
use std::sync::Arc;
#[cfg(unix)]
use std::sync::{atomic::Ordering, PoisonError};

#[cfg(unix)]
use crate::config::Command;
use crate::context;
use crate::runtime::Runtime;

pub(crate) mod state;

#[cfg(unix)]
use crate::inherited::{self, LISTENER, PARENT, READY, UPGRADE_PREFIX};

/// Why [`upgrade()`] did not start a new process.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     graceful::shutdown();
///     let refused = graceful::upgrade().unwrap_err();
///     assert!(matches!(refused, graceful::UpgradeError::ShuttingDown), "{refused}");
/// });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Called outside the program's run (`#[graceful::main]` or `Builder::run`) or from a
    /// `#[graceful::test]`.
    ///
    /// A test is not a program that can replace itself.
    NotTheProgram,
    /// Restart without downtime needs Unix (descriptor inheritance).
    Unsupported,
    /// The process is PID 1: its exit would end the container, and the new process with it.
    Pid1,
    /// An upgrade is already running.
    Running,
    /// The program is shutting down.
    ShuttingDown,
    /// The new process could not be started.
    Start(std::io::Error),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::NotTheProgram => f.write_str(
                "an upgrade needs the program's own run (#[graceful::main] or Builder::run)",
            ),
            UpgradeError::Unsupported => {
                f.write_str("restart without downtime is supported on Unix only")
            }
            UpgradeError::Pid1 => f.write_str(
                "the process is PID 1: its exit would end the container and the new process",
            ),
            UpgradeError::Running => f.write_str("an upgrade is already running"),
            UpgradeError::ShuttingDown => f.write_str("the program is shutting down"),
            UpgradeError::Start(err) => write!(f, "cannot start the new process: {err}"),
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpgradeError::Start(err) => Some(err),
            _ => None,
        }
    }
}

/// Starts a restart without downtime: a new process takes over the listeners, then this one shuts
/// down.
///
/// Once the new copy of the program is ready, this process shuts down with
/// [`Reason::Upgraded`](crate::Reason::Upgraded) and exits 0. Returns once the new process is
/// started; what becomes of it is reported (a `tracing` warning, or a `graceful: ` line on stderr,
/// when it fails).
///
/// The new process is this program's executable as resolved when `run` started, with the same
/// arguments and environment (or [`Builder::upgrade_command`](crate::Builder::upgrade_command)).
/// It gets every listener this process obtained through [`listen_tcp`](crate::listen_tcp),
/// [`listen_tcp_named`](crate::listen_tcp_named) and [`listen_unix`](crate::listen_unix):
/// asking the same way, it gets the same sockets, so both processes accept on them while it
/// starts and no connection is refused. It is ready when it calls [`ready()`](crate::ready) (or,
/// with `notify_ready = "auto"`, when its `main` first awaits). If it exits first, or is not
/// ready within `upgrade_timeout` (60 s unless set), it is killed and this process serves on.
///
/// Under systemd the unit needs `NotifyAccess=all`: the old process sends `MAINPID=` with the new
/// pid, then nothing more; the new one sends `READY=1` and the watchdog pings.
///
/// # Errors
///
/// Refused at once, with the reason, when an upgrade or a shutdown is running, under PID 1, on
/// Windows, or outside the program's run; or when the new process cannot be started.
///
/// # Examples
///
/// ```no_run
/// # use graceful_runtime as graceful;
/// # #[cfg(feature = "net")]
/// fn main() -> graceful::Exit {
///     graceful::Builder::new().run(async {
///         let listener = graceful::listen_tcp("127.0.0.1:8080").await?;
///         if graceful::is_upgrade() {
///             println!("took over from the old process");
///         }
///         graceful::ready();
///         // … serve from `listener`; then, when a new build has been deployed (an admin
///         // endpoint, a file watcher: what `upgrade_signal` does on a signal):
///         if let Err(refused) = graceful::upgrade() {
///             eprintln!("serving on: {refused}");
///         }
///         graceful::shutdown_requested().await; // `Reason::Upgraded` once the new one is ready
///         drop(listener);
///         Ok::<(), std::io::Error>(())
///     })
/// }
/// # #[cfg(not(feature = "net"))]
/// # fn main() {}
/// ```
pub fn upgrade() -> Result<(), UpgradeError> {
    match context::with(|shared| shared.cloned()) {
        Some(shared) => start(&shared),
        None => Err(UpgradeError::NotTheProgram),
    }
}

/// Returns whether this process is the new process of a restart without downtime.
///
/// Such a process was handed its listeners by the old one, which waits for its
/// [`ready()`](crate::ready).
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     // Started by a test harness, not by an upgrade.
///     assert!(!graceful::is_upgrade());
/// });
/// ```
pub fn is_upgrade() -> bool {
    #[cfg(unix)]
    return inherited::parent().is_some();
    #[cfg(not(unix))]
    false
}

/// The signal thread: the `upgrade_signal` arrived. A refusal is written by the report's thread,
/// since this one must not block.
pub(crate) fn on_signal(shared: &Arc<Runtime>) {
    if let Err(refused) = start(shared) {
        shared
            .reporter()
            .upgrade_warning_later(format!("upgrade refused: {refused}"));
    }
}

#[cfg(not(unix))]
fn start(shared: &Arc<Runtime>) -> Result<(), UpgradeError> {
    if !shared.config().exits_process {
        return Err(UpgradeError::NotTheProgram);
    }
    Err(UpgradeError::Unsupported)
}

#[cfg(unix)]
fn start(shared: &Arc<Runtime>) -> Result<(), UpgradeError> {
    let upgrade = shared.upgrade();
    if !shared.config().exits_process {
        return Err(UpgradeError::NotTheProgram);
    }
    let Some(command) = &upgrade.command else {
        return Err(UpgradeError::Start(std::io::Error::other(
            "the executable's path could not be resolved when the program started",
        )));
    };
    if std::process::id() == 1 {
        return Err(UpgradeError::Pid1);
    }
    if shared.shutdown().trigger.started().is_some() {
        return Err(UpgradeError::ShuttingDown);
    }
    if upgrade.running.swap(true, Ordering::SeqCst) {
        return Err(UpgradeError::Running);
    }
    match spawn(shared, command) {
        Ok(()) => Ok(()),
        Err(err) => {
            upgrade.running.store(false, Ordering::SeqCst);
            Err(UpgradeError::Start(err))
        }
    }
}

#[cfg(unix)]
fn spawn(shared: &Arc<Runtime>, command: &Command) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let listeners = inherited::handover()?;
    let (waiting, ready) = std::os::unix::net::UnixStream::pair()?;
    let mut child = std::process::Command::new(&command.program);
    child.args(&command.args);
    // The same environment, but for what names this process's descriptors: the previous
    // upgrade's variables, and systemd's socket activation (its `LISTEN_PID` is not the child's).
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with(UPGRADE_PREFIX)) {
            child.env_remove(name);
        }
    }
    for activation in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        child.env_remove(activation);
    }
    child.env(PARENT, std::process::id().to_string());
    child.env(READY, ready.as_raw_fd().to_string());
    for (key, fd) in &listeners {
        child.env(format!("{LISTENER}{}", fd.as_raw_fd()), key.encode());
    }
    let handed: Vec<std::os::fd::RawFd> = listeners
        .iter()
        .map(|(_, fd)| fd.as_raw_fd())
        .chain([ready.as_raw_fd()])
        .collect();
    // Descriptors this process inherited without close-on-exec (a supervisor's, a shell's):
    // the new process gets stdio and what is handed over, nothing else.
    let others: Vec<std::os::fd::RawFd> = open_descriptors()
        .into_iter()
        .filter(|fd| *fd > 2 && !handed.contains(fd))
        .collect();
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe calls are allowed: it reads two vectors allocated before the fork and
    // calls `fcntl`, nothing else. It sets close-on-exec on every other descriptor (one closed
    // since the listing fails harmlessly) and clears it on the descriptors handed over, which
    // are ours and open (held by `listeners` and `ready` until after the spawn), in the child
    // only.
    unsafe {
        child.pre_exec(move || {
            for &fd in &others {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            for &fd in &handed {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = child.spawn()?;
    // The child has its copies; ours close now, so its exit shows as the pair's end.
    drop(ready);
    drop(listeners);
    let pid = child.id();
    *shared
        .upgrade()
        .unready
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(pid);
    if shared.shutdown().trigger.started().is_some() {
        // A shutdown that started during the spawn found nothing to kill.
        shared.upgrade().abandon();
    }
    shared.reporter().upgrade_progress(format!(
        "upgrade: started {} (pid {pid}); waiting for it to be ready",
        command.program.display()
    ));
    let watching = shared.clone();
    let watcher = std::thread::Builder::new()
        .name("graceful-upgrade".into())
        .spawn(move || watch(&watching, child, waiting));
    if let Err(err) = watcher {
        // Nobody would wait for it: the upgrade cannot go on.
        shared.upgrade().abandon();
        return Err(err);
    }
    Ok(())
}

/// The descriptors open in this process, from the kernel's list; without one, every number
/// below the usual limit.
#[cfg(unix)]
fn open_descriptors() -> Vec<std::os::fd::RawFd> {
    let listed = ["/proc/self/fd", "/dev/fd"].iter().find_map(|dir| {
        let entries = std::fs::read_dir(dir).ok()?;
        Some(
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
        )
    });
    listed.unwrap_or_else(|| (0..1024).collect())
}

/// How an upgrade's new process ended its start.
#[cfg(unix)]
enum Outcome {
    Ready,
    Exited(std::process::ExitStatus),
    TimedOut,
    Abandoned,
    Lost(std::io::Error),
}

/// The watcher thread: waits for the child's ready byte, its exit, the timeout or a shutdown.
#[cfg(unix)]
fn watch(
    shared: &Arc<Runtime>,
    mut child: std::process::Child,
    mut waiting: std::os::unix::net::UnixStream,
) {
    use std::io::Read;
    use std::time::{Duration, Instant};

    let upgrade = shared.upgrade();
    let pid = child.id();
    let deadline = crate::deadline::later(Instant::now(), shared.config().upgrade_timeout);
    // Short reads so a child that exits while a grandchild holds its end is still seen.
    let tick = Duration::from_millis(100);
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Outcome::TimedOut;
        }
        if let Err(err) = waiting.set_read_timeout(Some(left.min(tick))) {
            break Outcome::Lost(err);
        }
        let mut byte = [0u8; 1];
        match waiting.read(&mut byte) {
            Ok(1) => break Outcome::Ready,
            // The child's end closed: it exited, or was killed by `abandon`.
            Ok(_) => {}
            Err(err) if is_timeout(&err) => {}
            Err(err) => break Outcome::Lost(err),
        }
        let mut unready = upgrade
            .unready
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if unready.is_none() {
            break Outcome::Abandoned;
        }
        // Reaped only while the pid is held here, so `abandon` never kills a recycled pid.
        match child.try_wait() {
            Ok(Some(status)) => {
                *unready = None;
                break Outcome::Exited(status);
            }
            Ok(None) => {}
            Err(err) => break Outcome::Lost(err),
        }
    };
    let what = match outcome {
        Outcome::Ready => {
            let mut unready = upgrade
                .unready
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if unready.take().is_some() && shared.shutdown().trigger.started().is_none() {
                // Under the lock: a shutdown starting now waits in `abandon`, finds nothing to
                // kill, and this process's shutdown is already the upgrade's.
                shared.hand_over(pid);
                drop(unready);
                shared.reporter().upgrade_progress(format!(
                    "upgrade: pid {pid} is ready and serves; this process drains and exits"
                ));
                return;
            }
            drop(unready);
            "was killed: a shutdown started before it was ready".to_string()
        }
        Outcome::Exited(status) => format!("exited before it was ready ({status})"),
        Outcome::TimedOut => format!(
            "was not ready within {}; killed it",
            graceful_options::format_duration(shared.config().upgrade_timeout)
        ),
        Outcome::Abandoned => "was killed: a shutdown started before it was ready".to_string(),
        Outcome::Lost(err) => format!("could not be watched ({err}); killed it"),
    };
    // Whatever ended the wait, the child goes: killed if it still runs, and reaped.
    let _ = child.kill();
    let _ = child.wait();
    *upgrade
        .unready
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = None;
    let serving = if shared.shutdown().trigger.started().is_some() {
        ""
    } else {
        "; this process goes on serving"
    };
    // Before the report: whoever reads that the upgrade failed may start the next one at once.
    upgrade.running.store(false, Ordering::SeqCst);
    crate::report::upgrade_warning(format!(
        "upgrade failed: the new process (pid {pid}) {what}{serving}"
    ));
}

#[cfg(unix)]
fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}
