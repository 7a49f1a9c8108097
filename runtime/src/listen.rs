//! Listeners that survive the process: taken from systemd's socket activation when the service
//! manager holds them, bound fresh otherwise.
//!
//! The descriptors systemd passes (`LISTEN_FDS` from 3 up, for the process `LISTEN_PID` names,
//! named by `LISTEN_FDNAMES`) are read when the first `run` starts and marked close-on-exec at
//! once, so no program the process starts inherits them by accident. A listener asked for by name
//! takes the descriptor of that name; one asked for by address takes the descriptor bound to that
//! address (a requested port 0 never matches). A descriptor that is not listening (an
//! `Accept=yes` unit's connection) is refused with an error. What the program never claims is
//! closed at [`ready()`](crate::ready).

use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A descriptor systemd passed, until the program claims it.
#[cfg(unix)]
struct Passed {
    name: Option<String>,
    fd: Option<OwnedFd>,
}

#[derive(Default)]
struct Listeners {
    #[cfg(unix)]
    passed: Vec<Passed>,
}

static LISTENERS: OnceLock<Mutex<Listeners>> = OnceLock::new();

fn listeners() -> MutexGuard<'static, Listeners> {
    LISTENERS
        .get_or_init(|| Mutex::new(read_passed()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Reads systemd's descriptors, once per process: `run` calls this before anything else starts.
pub(crate) fn take_passed() {
    drop(listeners());
}

#[cfg(unix)]
fn read_passed() -> Listeners {
    const FIRST: RawFd = 3;
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .filter(|_| ours)
        .unwrap_or(0);
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    let mut passed = Vec::new();
    for fd in FIRST..FIRST.saturating_add(count) {
        // SAFETY: `fcntl` on a descriptor number reads or sets its flags, nothing else; an
        // invalid number makes it fail, which is checked.
        let valid = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
        let name = names.next().filter(|n| !n.is_empty()).map(String::from);
        if !valid {
            continue;
        }
        // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is ours) for it to
        // own; this is the one place that takes it, once per process.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        passed.push(Passed { name, fd: Some(fd) });
    }
    Listeners { passed }
}

#[cfg(not(unix))]
fn read_passed() -> Listeners {
    Listeners::default()
}

/// `ready()`: what the program has not claimed by now, it never will.
pub(crate) fn close_unclaimed() {
    #[cfg(unix)]
    for passed in &mut listeners().passed {
        drop(passed.fd.take());
    }
}

/// What a listener is asked for by.
#[cfg(unix)]
enum Wanted<'a> {
    Name(&'a str),
    Address(std::net::SocketAddr),
    Path(&'a std::path::Path),
}

/// Whether the socket listens (`SO_ACCEPTCONN`).
#[cfg(unix)]
fn is_listening(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for the call to write, and `len` says how much.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value != 0
}

/// Looks at a passed descriptor without taking it.
#[cfg(unix)]
fn matches(passed: &Passed, wanted: &Wanted<'_>) -> bool {
    let Some(fd) = &passed.fd else {
        return false;
    };
    let probe = || {
        // SAFETY: the descriptor stays owned by `passed`; `ManuallyDrop` never closes it, and
        // the wrapper only lives for this call.
        std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(fd.as_raw_fd()) })
    };
    match wanted {
        Wanted::Name(name) => passed.name.as_deref() == Some(*name),
        Wanted::Address(address) => {
            address.port() != 0 && probe().local_addr().is_ok_and(|bound| bound == *address)
        }
        Wanted::Path(path) => {
            // SAFETY: as above.
            let unix = std::mem::ManuallyDrop::new(unsafe {
                std::os::unix::net::UnixListener::from_raw_fd(fd.as_raw_fd())
            });
            unix.local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p == *path))
                .unwrap_or(false)
        }
    }
}

/// The passed descriptor `wanted` names, taken; an error if it is not listening.
#[cfg(unix)]
fn claim(wanted: &Wanted<'_>) -> io::Result<Option<OwnedFd>> {
    let mut listeners = listeners();
    let Some(passed) = listeners.passed.iter_mut().find(|p| matches(p, wanted)) else {
        return Ok(None);
    };
    let fd = passed.fd.take().expect("matched a descriptor still held");
    if !is_listening(fd.as_raw_fd()) {
        let which = match &passed.name {
            Some(name) => format!("`{name}`"),
            None => format!("{}", fd.as_raw_fd()),
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "graceful: the socket {which} passed by the service manager is not listening \
                 (an `Accept=yes` unit passes connections); use `Accept=no`"
            ),
        ));
    }
    Ok(Some(fd))
}

/// A TCP listener on `address`: the one the service manager passed for it (systemd socket
/// activation, by the bound address), else bound fresh. `address` is resolved as
/// `TcpListener::bind` resolves it; a port of 0 always binds fresh.
///
/// # Examples
///
/// ```
/// graceful::Builder::new().signals([]).run(async {
///     let listener = graceful::listen_tcp("127.0.0.1:0").await.unwrap();
///     assert!(listener.local_addr().unwrap().port() != 0);
/// });
/// ```
///
/// # Errors
///
/// What binding fails with, or, for a passed socket that is not listening, an error that says so.
pub async fn listen_tcp(
    address: impl tokio::net::ToSocketAddrs,
) -> io::Result<tokio::net::TcpListener> {
    // Resolved once: the same addresses are matched against the passed sockets and bound.
    let candidates: Vec<std::net::SocketAddr> = tokio::net::lookup_host(address).await?.collect();
    #[cfg(unix)]
    for &candidate in &candidates {
        if let Some(fd) = claim(&Wanted::Address(candidate))? {
            return tcp_from(fd);
        }
    }
    tokio::net::TcpListener::bind(&candidates[..]).await
}

/// A TCP listener by name: the socket the service manager passed under `name`
/// (`FileDescriptorName=` in the socket unit, `LISTEN_FDNAMES`), else as
/// [`listen_tcp`] finds or binds it.
///
/// # Examples
///
/// ```
/// graceful::Builder::new().signals([]).run(async {
///     // Not under systemd: bound fresh.
///     let admin = graceful::listen_tcp_named("admin", "127.0.0.1:0").await.unwrap();
///     assert!(admin.local_addr().is_ok());
/// });
/// ```
///
/// # Errors
///
/// As [`listen_tcp`].
pub async fn listen_tcp_named(
    name: &str,
    address: impl tokio::net::ToSocketAddrs,
) -> io::Result<tokio::net::TcpListener> {
    #[cfg(unix)]
    if let Some(fd) = claim(&Wanted::Name(name))? {
        return tcp_from(fd);
    }
    #[cfg(not(unix))]
    let _ = name;
    listen_tcp(address).await
}

#[cfg(unix)]
fn tcp_from(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// A Unix socket listener at `path`: the one the service manager passed for it, else bound
/// fresh.
///
/// # Examples
///
/// ```
/// graceful::Builder::new().signals([]).run(async {
///     let path = std::env::temp_dir().join(format!("graceful-doc-{}.sock", std::process::id()));
///     let _ = std::fs::remove_file(&path);
///     let listener = graceful::listen_unix(&path).unwrap();
///     assert!(listener.local_addr().is_ok());
///     std::fs::remove_file(&path).unwrap();
/// });
/// ```
///
/// # Errors
///
/// What binding fails with, or, for a passed socket that is not listening, an error that says so.
///
/// # Panics
///
/// Outside a graceful runtime (tokio needs its reactor).
#[cfg(unix)]
pub fn listen_unix(path: impl AsRef<std::path::Path>) -> io::Result<tokio::net::UnixListener> {
    let path = path.as_ref();
    if let Some(fd) = claim(&Wanted::Path(path))? {
        let listener = std::os::unix::net::UnixListener::from(fd);
        listener.set_nonblocking(true)?;
        return tokio::net::UnixListener::from_std(listener);
    }
    tokio::net::UnixListener::bind(path)
}
