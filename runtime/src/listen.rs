//! Listeners that survive the process: inherited from the old process in a restart without
//! downtime, taken from systemd's socket activation when the service manager holds them, bound
//! fresh otherwise — and remembered, so the next upgrade hands them on.
//!
//! The descriptors a process is given — by its parent in an upgrade (see [`crate::upgrade`]), or
//! by systemd (`LISTEN_FDS` from 3 up, for the process `LISTEN_PID` names, named by
//! `LISTEN_FDNAMES`) — are read when the first `run` starts and marked close-on-exec at once, so
//! no program the process starts inherits them by accident. A listener asked for by name takes the
//! descriptor of that name; one asked for by address takes the descriptor bound to that address
//! (a requested port 0 never matches systemd's, since any port would). A descriptor that is not
//! listening (an `Accept=yes` unit's connection) is refused with an error. What the program never
//! claims is closed at [`ready()`](crate::ready).
//!
//! Every listener handed out is remembered as a duplicate descriptor under the request that got
//! it (its [`Key`]): the next upgrade hands those on, and the new process, asking the same way,
//! gets the same sockets. Asked for again in this process, a remembered listener is handed out
//! again rather than bound twice (a supervised server that restarts would otherwise find its own
//! port taken). The duplicates are closed when the shutdown starts, so a program that then drops
//! its listener stops the kernel accepting for it, as it would without this crate.

use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

#[cfg(unix)]
use std::ffi::{OsStr, OsString};
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What a listener was asked for by: what the new process of an upgrade matches it by.
#[cfg(unix)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Name(String),
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

#[cfg(unix)]
impl Key {
    /// A port-0 request asks for a new socket each time: never handed out twice.
    fn reusable(&self) -> bool {
        !matches!(self, Key::Tcp(address) if address.port() == 0)
    }

    /// `name:web`, `tcp:127.0.0.1:8080`, `unix:/run/app.sock`: how the environment carries it.
    pub(crate) fn encode(&self) -> OsString {
        match self {
            Key::Name(name) => format!("name:{name}").into(),
            Key::Tcp(address) => format!("tcp:{address}").into(),
            Key::Unix(path) => {
                let mut key = OsString::from("unix:");
                key.push(path.as_os_str());
                key
            }
        }
    }

    pub(crate) fn decode(text: &OsStr) -> Option<Key> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = text.as_bytes();
        if let Some(path) = bytes.strip_prefix(b"unix:") {
            return Some(Key::Unix(OsStr::from_bytes(path).into()));
        }
        let text = text.to_str()?;
        if let Some(name) = text.strip_prefix("name:") {
            return Some(Key::Name(name.into()));
        }
        Some(Key::Tcp(text.strip_prefix("tcp:")?.parse().ok()?))
    }
}

/// Where a descriptor the process was given came from.
#[cfg(unix)]
enum Origin {
    /// The old process of an upgrade, with the request it was handed out for.
    Parent(Key),
    /// systemd's socket activation, with its `FileDescriptorName=`.
    Manager(Option<String>),
}

/// A descriptor the process was given, until the program claims it.
#[cfg(unix)]
struct Given {
    origin: Origin,
    fd: Option<OwnedFd>,
}

#[derive(Default)]
struct Listeners {
    /// Inherited ones first: they win over the manager's.
    #[cfg(unix)]
    given: Vec<Given>,
    /// What the program holds, duplicated, for the next upgrade.
    #[cfg(unix)]
    remembered: Vec<(Key, OwnedFd)>,
}

static LISTENERS: OnceLock<Mutex<Listeners>> = OnceLock::new();

fn listeners() -> MutexGuard<'static, Listeners> {
    LISTENERS
        .get_or_init(|| Mutex::new(read_given()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Reads the descriptors given to the process, once per process: `run` calls this before
/// anything else starts.
pub(crate) fn take_given() {
    drop(listeners());
}

/// Takes ownership of a descriptor the process was given, and makes it close-on-exec.
///
/// # Safety
///
/// `fd` must be a descriptor handed to this process for it to own, and taken once.
#[cfg(unix)]
pub(crate) unsafe fn adopt(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: `fcntl` on a descriptor number reads or sets its flags, nothing else; an invalid
    // number makes it fail, which is checked.
    let valid = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
    // SAFETY: the caller's promise.
    valid.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(unix)]
fn read_given() -> Listeners {
    let mut given = Vec::new();
    for (fd, key) in crate::upgrade::inherited_listeners() {
        // SAFETY: the old process handed these numbers to this one (the upgrade's parent is
        // ours, see `inherited_listeners`), and this is the one place that takes them.
        if let Some(fd) = unsafe { adopt(fd) } {
            given.push(Given {
                origin: Origin::Parent(key),
                fd: Some(fd),
            });
        }
    }
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
    for fd in FIRST..FIRST.saturating_add(count) {
        let name = names.next().filter(|n| !n.is_empty()).map(String::from);
        // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is ours) for it to
        // own; this is the one place that takes it, once per process.
        if let Some(fd) = unsafe { adopt(fd) } {
            given.push(Given {
                origin: Origin::Manager(name),
                fd: Some(fd),
            });
        }
    }
    Listeners {
        given,
        remembered: Vec::new(),
    }
}

#[cfg(not(unix))]
fn read_given() -> Listeners {
    Listeners::default()
}

/// `ready()`: what the program has not claimed by now, it never will.
pub(crate) fn close_unclaimed() {
    #[cfg(unix)]
    for given in &mut listeners().given {
        drop(given.fd.take());
    }
}

/// The shutdown started: the program's own listeners are all that keep the sockets open now.
pub(crate) fn forget() {
    #[cfg(unix)]
    listeners().remembered.clear();
}

/// Duplicates of every listener handed out, with what each was asked for by: what an upgrade
/// hands to the new process. Close-on-exec, like every descriptor of ours.
#[cfg(unix)]
pub(crate) fn handover() -> io::Result<Vec<(Key, OwnedFd)>> {
    listeners()
        .remembered
        .iter()
        .map(|(key, fd)| Ok((key.clone(), fd.try_clone()?)))
        .collect()
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
fn is_listening(fd: BorrowedFd<'_>) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for the call to write, and `len` says how much.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value != 0
}

/// Whether the socket is bound where `wanted` says, looked at without taking it.
#[cfg(unix)]
fn bound_at(fd: BorrowedFd<'_>, wanted: &Wanted<'_>) -> bool {
    match wanted {
        Wanted::Name(_) => false,
        Wanted::Address(address) => {
            // SAFETY: the descriptor stays owned by the caller; `ManuallyDrop` never closes it,
            // and the wrapper only lives for this call.
            let tcp = std::mem::ManuallyDrop::new(unsafe {
                std::net::TcpListener::from_raw_fd(fd.as_raw_fd())
            });
            address.port() != 0 && tcp.local_addr().is_ok_and(|bound| bound == *address)
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

#[cfg(unix)]
fn matches(given: &Given, wanted: &Wanted<'_>, key: &Key) -> bool {
    let Some(fd) = &given.fd else {
        return false;
    };
    match &given.origin {
        Origin::Parent(handed) => handed == key || bound_at(fd.as_fd(), wanted),
        Origin::Manager(name) => match wanted {
            Wanted::Name(wanted) => name.as_deref() == Some(*wanted),
            _ => bound_at(fd.as_fd(), wanted),
        },
    }
}

/// The listener for `key`: remembered from an earlier request, or given to the process (the
/// parent's before the manager's), taken and remembered; `None` if the caller must bind. An
/// error if what was given is not listening.
#[cfg(unix)]
fn claim(wanted: &Wanted<'_>, key: &Key) -> io::Result<Option<OwnedFd>> {
    let mut listeners = listeners();
    if key.reusable() {
        if let Some((_, fd)) = listeners.remembered.iter().find(|(k, _)| k == key) {
            return fd.try_clone().map(Some);
        }
    }
    let Some(given) = listeners.given.iter_mut().find(|g| matches(g, wanted, key)) else {
        return Ok(None);
    };
    let fd = given.fd.take().expect("matched a descriptor still held");
    if !is_listening(fd.as_fd()) {
        let which = match &given.origin {
            Origin::Manager(Some(name)) => format!("`{name}`"),
            _ => format!("{}", fd.as_raw_fd()),
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "graceful: the socket {which} passed by the service manager is not listening \
                 (an `Accept=yes` unit passes connections); use `Accept=no`"
            ),
        ));
    }
    listeners.remembered.push((key.clone(), fd.try_clone()?));
    Ok(Some(fd))
}

/// Remembers a listener bound fresh.
#[cfg(unix)]
fn remember(key: Key, fd: BorrowedFd<'_>) -> io::Result<()> {
    let copy = fd.try_clone_to_owned()?;
    listeners().remembered.push((key, copy));
    Ok(())
}

/// Returns a TCP listener on `address`: the old process's or systemd's socket if one was passed, else a new one.
///
/// In a restart without downtime it is the one the old process had for `address`; else the one the
/// service manager passed for it (systemd socket activation, matched by the bound address); else
/// it is bound fresh. `address` is resolved as `TcpListener::bind` resolves it; a port of 0 binds
/// fresh, except in the new process of an upgrade, which gets the old one's socket.
///
/// The listener is remembered for the next upgrade, and asking again for the same address (not
/// port 0) in this process returns the same socket.
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
    tcp(None, address).await
}

/// Like [`listen_tcp`], but finds a passed socket by `name`, as systemd's `FileDescriptorName=` names it.
///
/// It is the socket the old process had under `name` in an upgrade, or the one the service manager
/// passed under `name` (`FileDescriptorName=` in the socket unit, `LISTEN_FDNAMES`), else what
/// [`listen_tcp`] finds or binds for `address`. Remembered under its name.
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
    tcp(Some(name), address).await
}

async fn tcp(
    name: Option<&str>,
    address: impl tokio::net::ToSocketAddrs,
) -> io::Result<tokio::net::TcpListener> {
    #[cfg(unix)]
    if let Some(name) = name {
        if let Some(fd) = claim(&Wanted::Name(name), &Key::Name(name.into()))? {
            return tcp_from(fd);
        }
    }
    // Resolved once: the same addresses are matched against the given sockets and bound.
    let candidates: Vec<std::net::SocketAddr> = tokio::net::lookup_host(address).await?.collect();
    #[cfg(unix)]
    for &candidate in &candidates {
        let key = match name {
            Some(name) => Key::Name(name.into()),
            None => Key::Tcp(candidate),
        };
        if let Some(fd) = claim(&Wanted::Address(candidate), &key)? {
            return tcp_from(fd);
        }
    }
    let listener = tokio::net::TcpListener::bind(&candidates[..]).await?;
    #[cfg(unix)]
    {
        let bound = listener.local_addr()?;
        let key = match name {
            Some(name) => Key::Name(name.into()),
            // The request that bound it: the first candidate of the bound IP.
            None => Key::Tcp(
                candidates
                    .iter()
                    .copied()
                    .find(|c| c.ip() == bound.ip())
                    .unwrap_or(bound),
            ),
        };
        remember(key, listener.as_fd())?;
    }
    #[cfg(not(unix))]
    let _ = name;
    Ok(listener)
}

#[cfg(unix)]
fn tcp_from(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Returns a Unix socket listener at `path`: the old process's or systemd's if one was passed, else a new one.
///
/// Remembered for the next upgrade like [`listen_tcp`]'s.
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
    let key = Key::Unix(path.into());
    if let Some(fd) = claim(&Wanted::Path(path), &key)? {
        let listener = std::os::unix::net::UnixListener::from(fd);
        listener.set_nonblocking(true)?;
        return tokio::net::UnixListener::from_std(listener);
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    remember(key, listener.as_fd())?;
    Ok(listener)
}

#[cfg(all(test, unix))]
mod tests {
    use super::Key;

    #[test]
    fn keys_survive_the_environment() {
        let keys = [
            Key::Name("web:admin".into()),
            Key::Tcp("127.0.0.1:0".parse().unwrap()),
            Key::Tcp("[::1]:8080".parse().unwrap()),
            Key::Unix("/run/app with space.sock".into()),
        ];
        for key in keys {
            assert_eq!(Key::decode(&key.encode()), Some(key));
        }
        assert_eq!(Key::decode("bogus".as_ref()), None);
        assert!(!Key::Tcp("127.0.0.1:0".parse().unwrap()).reusable());
        assert!(Key::Tcp("127.0.0.1:80".parse().unwrap()).reusable());
    }
}
