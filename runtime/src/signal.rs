//! `Signal`, the signals and console events a program can be told to act on, by name: what the
//! option table accepts, parsed and resolved for the platform at hand. A plain value: capture is
//! `signals.rs`'s.

use std::fmt;
use std::str::FromStr;
/// A Unix signal or Windows console event that can start a shutdown, a task dump or an upgrade.
///
/// The names are those of the attribute's `signals` option; a name of the other platform is
/// ignored where it does not exist. A name read at run time (a configuration file) is parsed,
/// and a typo is an error the program handles:
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use graceful::Signal;
///
/// let reload: Signal = "SIGHUP".parse().unwrap();
/// assert_eq!(reload, Signal::SIGHUP);
/// assert_eq!(reload.to_string(), "SIGHUP");
/// let typo = "SIGHUPP".parse::<Signal>().unwrap_err();
/// assert!(typo.to_string().starts_with("unknown signal `SIGHUPP`; expected one of `SIGINT`"));
///
/// let exit = graceful::Builder::new()
///     .signals([Signal::SIGTERM, reload])
///     .run(async {});
/// assert_eq!(exit.code(), 0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal {
    /// One of the option table's names.
    pub(crate) name: &'static str,
}

impl Signal {
    /// Unix: interrupt, Ctrl-C at a terminal.
    pub const SIGINT: Signal = Signal { name: "SIGINT" };
    /// Unix: termination, what `kill`, systemd and Kubernetes send.
    pub const SIGTERM: Signal = Signal { name: "SIGTERM" };
    /// Unix: hang-up, often "reload".
    pub const SIGHUP: Signal = Signal { name: "SIGHUP" };
    /// Unix: quit, Ctrl-\\ at a terminal.
    pub const SIGQUIT: Signal = Signal { name: "SIGQUIT" };
    /// Unix: user-defined signal 1.
    pub const SIGUSR1: Signal = Signal { name: "SIGUSR1" };
    /// Unix: user-defined signal 2.
    pub const SIGUSR2: Signal = Signal { name: "SIGUSR2" };
    /// Windows: Ctrl-C in the console.
    pub const CTRL_C: Signal = Signal { name: "CTRL_C" };
    /// Windows: Ctrl-Break in the console.
    pub const CTRL_BREAK: Signal = Signal { name: "CTRL_BREAK" };
    /// Windows: the console window is being closed.
    pub const CTRL_CLOSE: Signal = Signal { name: "CTRL_CLOSE" };
    /// Windows: the user logs off.
    pub const CTRL_LOGOFF: Signal = Signal {
        name: "CTRL_LOGOFF",
    };
    /// Windows: the system shuts down.
    pub const CTRL_SHUTDOWN: Signal = Signal {
        name: "CTRL_SHUTDOWN",
    };

    /// Its number on this platform; only signals of this platform are captured. (Windows' console
    /// events are told apart by their stream, not their number.)
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn number(self) -> i32 {
        number(self.name).unwrap_or(-1)
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for Signal {
    type Err = ParseSignalError;

    /// Exactly the names of the `signals` option, Unix's and Windows' alike.
    fn from_str(name: &str) -> Result<Signal, ParseSignalError> {
        graceful_options::UNIX_SIGNALS
            .iter()
            .chain(graceful_options::WINDOWS_SIGNALS)
            .find(|known| **known == name)
            .map(|known| Signal { name: known })
            .ok_or_else(|| ParseSignalError {
                name: name.to_string(),
            })
    }
}

/// Error returned when parsing a [`Signal`] from an unknown or uncatchable name.
///
/// Its message lists the valid names, in the words the attribute uses for the same mistake.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// let err = "SIGKILL".parse::<graceful::Signal>().unwrap_err();
/// assert!(err.to_string().contains("cannot be caught"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSignalError {
    name: String,
}

impl fmt::Display for ParseSignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match graceful_options::check_signal(&self.name) {
            Err(message) => f.write_str(&message),
            Ok(()) => write!(f, "`{}` is a signal", self.name),
        }
    }
}

impl std::error::Error for ParseSignalError {}

/// The signals that start a shutdown when `signals` is not set.
#[cfg(unix)]
pub(crate) const DEFAULT_SIGNALS: &[&str] = graceful_options::DEFAULT_UNIX_SIGNALS;
#[cfg(windows)]
pub(crate) const DEFAULT_SIGNALS: &[&str] = graceful_options::DEFAULT_WINDOWS_SIGNALS;
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

/// A name the option table accepts: `Some` on its platform, `None` on the other (ignored here).
pub(crate) fn resolve(name: &'static str) -> Option<Signal> {
    number(name).map(|_| Signal { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_per_platform() {
        #[cfg(unix)]
        {
            assert_eq!(resolve("SIGTERM").unwrap().number(), libc::SIGTERM);
            assert_eq!(resolve("CTRL_C"), None);
        }
        #[cfg(windows)]
        {
            assert_eq!(resolve("CTRL_C").unwrap().number(), 0);
            assert_eq!(resolve("SIGTERM"), None);
        }
        // Every name of the table resolves on exactly one platform.
        use graceful_options::{UNIX_SIGNALS, WINDOWS_SIGNALS};
        assert!(UNIX_SIGNALS
            .iter()
            .chain(WINDOWS_SIGNALS)
            .all(|name| resolve(name).is_some() == (cfg!(unix) == UNIX_SIGNALS.contains(name))));
    }
}
