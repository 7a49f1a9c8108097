//! What this process was given when it started, and the table of its listeners. The old process
//! of a restart without downtime gives the new one its listening sockets, a pipe to say it is
//! ready on, and its own pid, through descriptors and environment variables; systemd's socket
//! activation gives sockets (`LISTEN_FDS` from 3 up, for the process `LISTEN_PID` names, named by
//! `LISTEN_FDNAMES`). Both are read once, when the first `run` starts, and made close-on-exec at
//! once. The table also remembers every listener handed out, under the request that got it (its
//! [`Key`]), for the next upgrade to hand on. Plain state of the process: `listen.rs` hands
//! listeners out, `upgrade.rs` starts the new process, `ready()` closes what nobody claimed.

#[cfg(unix)]
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

#[cfg(unix)]
use std::ffi::{OsStr, OsString};
#[cfg(all(unix, feature = "net"))]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
#[cfg(unix)]
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
    #[cfg(feature = "net")]
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
#[cfg_attr(
    not(feature = "net"),
    allow(dead_code, reason = "only the listeners match on it")
)]
enum Origin {
    /// The old process of an upgrade, with the request it was handed out for.
    Parent(Key),
    /// systemd's socket activation, with its `FileDescriptorName=`.
    Manager(Option<String>),
}

/// A descriptor the process was given, until the program claims it.
#[cfg(unix)]
#[cfg_attr(
    not(feature = "net"),
    allow(dead_code, reason = "only the listeners match on it")
)]
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
    for (fd, key) in inherited_listeners() {
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
#[cfg(all(unix, feature = "net"))]
pub(crate) enum Wanted<'a> {
    Name(&'a str),
    Address(std::net::SocketAddr),
    Path(&'a std::path::Path),
}

/// Whether the socket listens (`SO_ACCEPTCONN`).
#[cfg(all(unix, feature = "net"))]
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
#[cfg(all(unix, feature = "net"))]
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

#[cfg(all(unix, feature = "net"))]
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
#[cfg(all(unix, feature = "net"))]
pub(crate) fn claim(wanted: &Wanted<'_>, key: &Key) -> io::Result<Option<OwnedFd>> {
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
#[cfg(all(unix, feature = "net"))]
pub(crate) fn remember(key: Key, fd: BorrowedFd<'_>) -> io::Result<()> {
    let copy = fd.try_clone_to_owned()?;
    listeners().remembered.push((key, copy));
    Ok(())
}

/// The variables the new process reads, all with this prefix; removed from its own children's
/// environment.
#[cfg(unix)]
pub(crate) const UPGRADE_PREFIX: &str = "GRACEFUL_UPGRADE_";
#[cfg(unix)]
pub(crate) const PARENT: &str = "GRACEFUL_UPGRADE_PARENT";
#[cfg(unix)]
pub(crate) const READY: &str = "GRACEFUL_UPGRADE_READY";
/// One per listener: `GRACEFUL_UPGRADE_FD_<number>=<key>`.
#[cfg(unix)]
pub(crate) const LISTENER: &str = "GRACEFUL_UPGRADE_FD_";

/// The old process's pid, if this process is the new one of an upgrade (see the module docs).
/// The service manager may name it in `WATCHDOG_PID` for this process.
#[cfg(unix)]
pub(crate) fn parent() -> Option<u32> {
    static PARENT_PID: OnceLock<Option<u32>> = OnceLock::new();
    *PARENT_PID.get_or_init(|| {
        let named: u32 = std::env::var(PARENT).ok()?.parse().ok()?;
        // SAFETY: `getppid` has no preconditions.
        let actual = unsafe { libc::getppid() };
        (u32::try_from(actual).ok()? == named).then_some(named)
    })
}

/// The listeners the old process handed over: descriptor numbers and requests. Read once, when
/// the first `run` starts (see [`crate::listen`]).
#[cfg(unix)]
pub(crate) fn inherited_listeners() -> Vec<(std::os::fd::RawFd, Key)> {
    if parent().is_none() {
        return Vec::new();
    }
    // The ready descriptor too, taken now: close-on-exec before anything else starts.
    ready_pipe();
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let fd = name.to_str()?.strip_prefix(LISTENER)?.parse().ok()?;
            Some((fd, Key::decode(&value)?))
        })
        .collect()
}

/// The new process's end of the readiness pair, until `ready()` writes to it.
#[cfg(unix)]
fn ready_pipe() -> &'static Mutex<Option<std::os::unix::net::UnixStream>> {
    static READY_PIPE: OnceLock<Mutex<Option<std::os::unix::net::UnixStream>>> = OnceLock::new();
    READY_PIPE.get_or_init(|| {
        let stream = parent().and_then(|_| {
            let fd: std::os::fd::RawFd = std::env::var(READY).ok()?.parse().ok()?;
            // SAFETY: the old process (our parent, checked) handed this descriptor to this
            // process to own; the `OnceLock` takes it once.
            unsafe { adopt(fd) }.map(std::os::unix::net::UnixStream::from)
        });
        Mutex::new(stream)
    })
}

/// `ready()`, in the new process of an upgrade: tells the old one, once.
pub(crate) fn tell_old_process() {
    #[cfg(unix)]
    {
        use std::io::Write;
        let taken = ready_pipe()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut stream) = taken {
            let _ = stream.write_all(b"R");
        }
    }
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
    }

    #[cfg(feature = "net")]
    #[test]
    fn a_port_0_request_is_never_handed_out_twice() {
        assert!(!Key::Tcp("127.0.0.1:0".parse().unwrap()).reusable());
        assert!(Key::Tcp("127.0.0.1:80".parse().unwrap()).reusable());
    }
}
