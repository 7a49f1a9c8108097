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

#[cfg(unix)]
use std::os::fd::{AsFd, OwnedFd};

#[cfg(unix)]
use crate::inherited::{claim, remember, Key, Wanted};

/// Returns a TCP listener on `address`: the old process's or systemd's socket if one was passed,
/// else a new one.
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
/// # use graceful_runtime as graceful;
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

/// Like [`listen_tcp`], but finds a passed socket by `name`, as systemd's `FileDescriptorName=`
/// names it.
///
/// It is the socket the old process had under `name` in an upgrade, or the one the service manager
/// passed under `name` (`FileDescriptorName=` in the socket unit, `LISTEN_FDNAMES`), else what
/// [`listen_tcp`] finds or binds for `address`. Remembered under its name.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
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

/// Returns a Unix socket listener at `path`: the old process's or systemd's if one was passed, else
/// a new one.
///
/// Remembered for the next upgrade like [`listen_tcp`]'s.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
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
