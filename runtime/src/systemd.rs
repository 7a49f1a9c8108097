//! systemd's notify protocol: `READY=1` from [`ready()`](crate::ready), `STOPPING=1` and
//! `EXTEND_TIMEOUT_USEC` when the shutdown starts, `WATCHDOG=1` every half `WATCHDOG_USEC`. A
//! datagram to `NOTIFY_SOCKET`, as `sd_notify(3)` sends it; nothing at all when the variable is
//! unset.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The connection to the service manager, read from the environment when `run` starts.
pub(crate) struct Notifier {
    #[cfg(all(unix, feature = "systemd"))]
    socket: std::os::unix::net::UnixDatagram,
    #[cfg(all(unix, feature = "systemd"))]
    address: std::os::unix::net::SocketAddr,
    /// Half of `WATCHDOG_USEC`, when the manager expects pings from this process.
    pub(crate) ping_every: Option<Duration>,
    /// Set once an upgrade handed the service to the new process: this one says nothing more.
    silent: AtomicBool,
}

impl Notifier {
    #[cfg(all(unix, feature = "systemd"))]
    pub(crate) fn from_env() -> Option<Notifier> {
        use std::os::unix::net::{SocketAddr, UnixDatagram};

        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let address = match bytes.strip_prefix(b"@") {
            // A name in Linux's abstract namespace.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Some(name) => {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            }
            _ => SocketAddr::from_pathname(&path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        // The signal thread sends STOPPING=1: a manager slow to read must not stall it.
        socket.set_nonblocking(true).ok()?;
        Some(Notifier {
            socket,
            address,
            ping_every: watchdog_period().map(|period| period / 2),
            silent: AtomicBool::new(false),
        })
    }

    #[cfg(not(all(unix, feature = "systemd")))]
    pub(crate) fn from_env() -> Option<Notifier> {
        None
    }

    pub(crate) fn send(&self, message: &str) {
        if self.silent.load(Ordering::SeqCst) {
            return;
        }
        // Best effort, like sd_notify: a manager that went away is no reason to fail.
        #[cfg(all(unix, feature = "systemd"))]
        let _ = self.socket.send_to_addr(message.as_bytes(), &self.address);
        #[cfg(not(all(unix, feature = "systemd")))]
        let _ = message;
    }
}

/// `WATCHDOG_USEC`, if it is meant for this process: `WATCHDOG_PID` unset, ours, or, in the new
/// process of an upgrade, the old one's (the manager set it before the hand-over).
#[cfg(all(unix, feature = "systemd"))]
fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        let pid = pid.to_str()?.parse::<u32>().ok()?;
        if pid != std::process::id() && Some(pid) != crate::inherited::parent() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// One runtime's side of the protocol: the socket, when the process runs under a
/// `Type=notify` unit, and whether `READY=1` went out.
pub(crate) struct Systemd {
    notifier: Option<Arc<Notifier>>,
    ready_sent: AtomicBool,
}

impl Systemd {
    /// From `NOTIFY_SOCKET`, for a run that is the program (`notifies`); silent otherwise.
    pub(crate) fn from_env(notifies: bool) -> Systemd {
        Systemd {
            notifier: if notifies {
                Notifier::from_env().map(Arc::new)
            } else {
                None
            },
            ready_sent: AtomicBool::new(false),
        }
    }

    /// `READY=1`, once.
    pub(crate) fn ready(&self) {
        if let Some(notifier) = &self.notifier {
            if !self.ready_sent.swap(true, Ordering::SeqCst) {
                notifier.send("READY=1");
            }
        }
    }

    /// An upgrade's new process `pid` is ready: the manager is told it is the main process now
    /// (the unit needs `NotifyAccess=all`), and from here on this process sends nothing more.
    #[cfg(unix)]
    pub(crate) fn hand_over(&self, pid: u32) {
        if let Some(notifier) = &self.notifier {
            notifier.send(&format!("MAINPID={pid}"));
            notifier.silent.store(true, Ordering::SeqCst);
        }
    }

    /// `STOPPING=1`, and the time the manager must allow: the grace and the watchdog's second.
    pub(crate) fn stopping(&self, grace: Duration) {
        if let Some(notifier) = &self.notifier {
            let usec = grace.saturating_add(Duration::from_secs(1)).as_micros();
            notifier.send(&format!("STOPPING=1\nEXTEND_TIMEOUT_USEC={usec}"));
        }
    }

    /// `WATCHDOG=1` every half `WATCHDOG_USEC`, from a task on `runtime`: it stops with the
    /// runtime, so a wedged runtime stops pinging and systemd sees it.
    pub(crate) fn start_pings(&self, runtime: &tokio::runtime::Handle) {
        let Some(notifier) = self.notifier.clone() else {
            return;
        };
        let Some(every) = notifier.ping_every else {
            return;
        };
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                notifier.send("WATCHDOG=1");
            }
        });
    }
}
