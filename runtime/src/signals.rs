//! Signal capture on an OS thread of its own, so a signal is seen even when every runtime thread
//! is busy (a task hogging a `current_thread` runtime makes tokio's own signal streams deaf).

use std::sync::Arc;

use crate::context::Shared;
use crate::exit::{self, Forced};
use crate::report;
use crate::shutdown::Reason;

/// A signal as the user named it, and its number on this platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Signal {
    pub(crate) name: &'static str,
    pub(crate) number: i32,
}

/// The names `signals` accepts on Unix.
///
/// # Examples
///
/// ```
/// assert!(graceful::UNIX_SIGNALS.contains(&"SIGHUP"));
/// assert!(!graceful::UNIX_SIGNALS.contains(&"SIGKILL"), "cannot be caught");
/// ```
pub const UNIX_SIGNALS: &[&str] = &[
    "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
];

/// The names `signals` accepts on Windows (console control events).
///
/// # Examples
///
/// ```
/// assert!(graceful::WINDOWS_SIGNALS.contains(&"CTRL_C"));
/// ```
pub const WINDOWS_SIGNALS: &[&str] = &[
    "CTRL_C",
    "CTRL_BREAK",
    "CTRL_CLOSE",
    "CTRL_LOGOFF",
    "CTRL_SHUTDOWN",
];

/// The signals that start a shutdown when `signals` is not set.
#[cfg(unix)]
pub(crate) const DEFAULT_SIGNALS: &[&str] = &["SIGINT", "SIGTERM"];
#[cfg(windows)]
pub(crate) const DEFAULT_SIGNALS: &[&str] =
    &["CTRL_C", "CTRL_BREAK", "CTRL_CLOSE", "CTRL_SHUTDOWN"];
#[cfg(not(any(unix, windows)))]
pub(crate) const DEFAULT_SIGNALS: &[&str] = &[];

#[cfg(unix)]
fn number(name: &str) -> Option<i32> {
    Some(match name {
        "SIGINT" => libc::SIGINT,
        "SIGTERM" => libc::SIGTERM,
        "SIGHUP" => libc::SIGHUP,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGUSR2" => libc::SIGUSR2,
        _ => return None,
    })
}

#[cfg(not(unix))]
fn number(name: &str) -> Option<i32> {
    // The `CTRL_*_EVENT` codes of the Windows console API.
    Some(match name {
        "CTRL_C" => 0,
        "CTRL_BREAK" => 1,
        "CTRL_CLOSE" => 2,
        "CTRL_LOGOFF" => 5,
        "CTRL_SHUTDOWN" => 6,
        _ => return None,
    })
}

/// `Ok(Some)` for a name of this platform, `Ok(None)` for one of the other (ignored here, as SPEC
/// §2 says), `Err` for a name that is neither.
pub(crate) fn resolve(name: &str) -> Result<Option<Signal>, String> {
    let all = UNIX_SIGNALS.iter().chain(WINDOWS_SIGNALS);
    let Some(&name) = all.into_iter().find(|n| **n == name) else {
        return Err(format!(
            "unknown signal `{name}`; expected one of {}",
            UNIX_SIGNALS
                .iter()
                .chain(WINDOWS_SIGNALS)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    Ok(number(name).map(|number| Signal { name, number }))
}

/// Called on the signal thread for each captured signal.
fn on_signal(shared: &Arc<Shared>, signal: Signal) {
    if shared.config.dump_signal == Some(signal) {
        report::dump(shared);
        return;
    }
    if !shared.start_shutdown(Reason::Signal(signal.name), Some(signal)) {
        exit::force(shared, Forced::Signal(signal));
    }
}

/// The running signal thread; [`close`](Listener::close) ends it.
pub(crate) struct Listener {
    thread: std::thread::JoinHandle<()>,
    #[cfg(unix)]
    handlers: Vec<signal_hook::SigId>,
    #[cfg(unix)]
    wake: std::os::unix::net::UnixStream,
    #[cfg(windows)]
    stop: tokio_util::sync::CancellationToken,
}

/// The byte that tells the signal thread to end.
#[cfg(unix)]
const CLOSE: u8 = u8::MAX;

impl Listener {
    /// Stops capturing and waits for the thread to end, so that nothing of this runtime outlives
    /// `run`. The wait is short: the thread only ever waits for the next byte, and if the close
    /// byte finds the pipe full, dropping the write end makes its reads end all the same.
    pub(crate) fn close(self) {
        #[cfg(unix)]
        {
            for id in self.handlers {
                signal_hook::low_level::unregister(id);
            }
            let _ = std::io::Write::write_all(&mut &self.wake, &[CLOSE]);
            drop(self.wake);
        }
        #[cfg(windows)]
        self.stop.cancel();
        let _ = self.thread.join();
    }
}

fn wanted(shared: &Shared) -> Vec<Signal> {
    let mut wanted = shared.config.signals.clone();
    wanted.extend(shared.config.dump_signal);
    wanted
}

/// Installs the handlers now (signals from this moment on are captured) and starts the thread.
///
/// Every delivery counts: the handler writes one byte per delivery to a pipe the thread reads.
/// (signal-hook's iterator keeps a set of the signals seen since its last read, so two SIGINTs
/// in quick succession would be one, and the second could never force the exit.)
#[cfg(unix)]
pub(crate) fn listen(shared: &Arc<Shared>) -> std::io::Result<Option<Listener>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    let wanted = wanted(shared);
    if wanted.is_empty() {
        return Ok(None);
    }
    let (mut read, write) = UnixStream::pair()?;
    // A full pipe drops the byte instead of blocking inside a signal handler.
    write.set_nonblocking(true)?;
    let fd = write.as_raw_fd();
    let mut handlers = Vec::new();
    for (index, signal) in wanted.iter().enumerate() {
        let byte = index as u8;
        // SAFETY: the action is async-signal-safe: one write(2) of a byte on the stack, to a
        // descriptor that `Listener` keeps open until the action is unregistered.
        let id = unsafe {
            signal_hook::low_level::register(signal.number, move || {
                libc::write(fd, (&byte as *const u8).cast(), 1);
            })
        };
        match id {
            Ok(id) => handlers.push(id),
            Err(err) => {
                for id in handlers {
                    signal_hook::low_level::unregister(id);
                }
                return Err(err);
            }
        }
    }
    let shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("graceful-signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = read.read(&mut byte) {
                match wanted.get(usize::from(byte[0])) {
                    Some(signal) if byte[0] != CLOSE => on_signal(&shared, *signal),
                    _ => return,
                }
            }
        })?;
    Ok(Some(Listener {
        thread,
        handlers,
        wake: write,
    }))
}

/// Windows delivers console events on a thread of its own; tokio's listeners for them run here on
/// a small runtime of ours, so a busy main runtime does not delay them.
#[cfg(windows)]
pub(crate) fn listen(shared: &Arc<Shared>) -> std::io::Result<Option<Listener>> {
    use tokio::signal::windows;

    let wanted = wanted(shared);
    if wanted.is_empty() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("graceful-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                macro_rules! forward {
                    ($signal:expr, $listen:path) => {{
                        let signal = $signal;
                        let shared = shared.clone();
                        match $listen() {
                            Ok(mut events) => {
                                tokio::spawn(async move {
                                    while events.recv().await.is_some() {
                                        on_signal(&shared, signal);
                                    }
                                });
                            }
                            Err(err) => report::stderr_line(format_args!(
                                "cannot listen for {}: {err}",
                                signal.name
                            )),
                        }
                    }};
                }
                for signal in wanted {
                    match signal.name {
                        "CTRL_C" => forward!(signal, windows::ctrl_c),
                        "CTRL_BREAK" => forward!(signal, windows::ctrl_break),
                        "CTRL_CLOSE" => forward!(signal, windows::ctrl_close),
                        "CTRL_LOGOFF" => forward!(signal, windows::ctrl_logoff),
                        _ => forward!(signal, windows::ctrl_shutdown),
                    }
                }
                stopped.cancelled().await;
            })
        })?;
    Ok(Some(Listener { thread, stop }))
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn listen(_shared: &Arc<Shared>) -> std::io::Result<Option<Listener>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_per_platform() {
        assert!(resolve("SIGKILL").unwrap_err().contains("`SIGINT`"));
        assert!(resolve("sigterm").is_err());
        #[cfg(unix)]
        {
            assert_eq!(resolve("SIGTERM").unwrap().unwrap().number, libc::SIGTERM);
            assert_eq!(resolve("CTRL_C").unwrap(), None);
        }
    }
}
