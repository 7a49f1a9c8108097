//! The option table of [`graceful-main`](https://docs.rs/graceful-main): the names, values,
//! defaults and checks that `#[graceful::main]` applies at compile time and `graceful::Builder` at
//! run time.
//!
//! Both use the functions here, so both reject the same settings with the same words: the
//! attribute as a compile error on the offending token, the builder as a panic saying
//! `graceful::Builder: <the same words>`. Depend on `graceful-main`, not on this crate.

#![warn(missing_docs)]

use std::time::Duration;

/// The grace when none is set: 25 s, under Kubernetes' default 30 s
/// `terminationGracePeriodSeconds`, so the report is written before the kubelet's SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(25);

/// The signal names `signals` accepts on Unix.
pub const UNIX_SIGNALS: &[&str] = &[
    "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
];

/// The names `signals` accepts on Windows (console control events).
pub const WINDOWS_SIGNALS: &[&str] = &[
    "CTRL_C",
    "CTRL_BREAK",
    "CTRL_CLOSE",
    "CTRL_LOGOFF",
    "CTRL_SHUTDOWN",
];

/// The signals that start a shutdown when `signals` is not set, on Unix.
pub const DEFAULT_UNIX_SIGNALS: &[&str] = &["SIGINT", "SIGTERM"];

/// The signals that start a shutdown when `signals` is not set, on Windows.
pub const DEFAULT_WINDOWS_SIGNALS: &[&str] =
    &["CTRL_C", "CTRL_BREAK", "CTRL_CLOSE", "CTRL_SHUTDOWN"];

/// The names `dump_signal` accepts.
pub const DUMP_SIGNALS: &[&str] = &["SIGUSR1", "SIGUSR2", "SIGQUIT"];

/// The names `upgrade_signal` accepts.
pub const UPGRADE_SIGNALS: &[&str] = &["SIGHUP", "SIGUSR1", "SIGUSR2"];

/// How long the old process waits for the new one when `upgrade_timeout` is not set: a minute,
/// time enough for a service that warms caches or opens pools before it calls `ready()`.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// The options of `#[graceful::main]`, in the order the docs list them.
pub const MAIN_OPTIONS: &[&str] = &[
    "flavor",
    "uvloop_like",
    "worker_threads",
    "blocking_threads",
    "grace",
    "signals",
    "run_forever",
    "stop_on_panic",
    "stop_on_error",
    "signal_exit_code",
    "drain_delay",
    "dump_signal",
    "notify_ready",
    "second_signal",
    "upgrade_signal",
    "upgrade_timeout",
    "crate",
];

/// The options of `#[graceful::test]`.
pub const TEST_OPTIONS: &[&str] = &[
    "flavor",
    "uvloop_like",
    "worker_threads",
    "blocking_threads",
    "grace",
    "stop_on_panic",
    "stop_on_error",
    "drain_delay",
    "start_paused",
    "crate",
];

/// `grace` is the whole shutdown budget: zero would abort everything at once.
///
/// ```
/// use std::time::Duration;
/// assert!(graceful_options::check_grace(Duration::from_secs(5)).is_ok());
/// assert_eq!(
///     graceful_options::check_grace(Duration::ZERO).unwrap_err(),
///     "`grace` must be greater than zero"
/// );
/// ```
pub fn check_grace(grace: Duration) -> Result<(), String> {
    if grace.is_zero() {
        return Err("`grace` must be greater than zero".into());
    }
    Ok(())
}

/// `worker_threads` and `blocking_threads` count threads.
///
/// ```
/// assert!(graceful_options::check_threads("worker_threads", 2).is_ok());
/// assert!(graceful_options::check_threads("worker_threads", 0).is_err());
/// ```
pub fn check_threads(option: &str, n: usize) -> Result<(), String> {
    if n == 0 {
        return Err(format!("`{option}` must be an integer greater than 0"));
    }
    Ok(())
}

/// One name of `signals`: known on some platform, and catchable.
///
/// ```
/// assert!(graceful_options::check_signal("SIGHUP").is_ok());
/// assert!(graceful_options::check_signal("SIGKILL").unwrap_err().contains("cannot be caught"));
/// ```
pub fn check_signal(name: &str) -> Result<(), String> {
    if UNIX_SIGNALS.contains(&name) || WINDOWS_SIGNALS.contains(&name) {
        return Ok(());
    }
    if name == "SIGKILL" || name == "SIGSTOP" {
        return Err(format!(
            "`{name}` cannot be caught, so it cannot start a graceful shutdown; use `SIGTERM` or `SIGINT`"
        ));
    }
    let all: Vec<String> = UNIX_SIGNALS
        .iter()
        .chain(WINDOWS_SIGNALS)
        .map(|n| format!("`{n}`"))
        .collect();
    Err(format!(
        "unknown signal `{name}`; expected one of {}",
        all.join(", ")
    ))
}

/// The whole `signals` list: each name valid, none twice. On error, the index of the offending
/// name, for the attribute to point at.
///
/// ```
/// assert!(graceful_options::check_signals(["SIGINT", "CTRL_C"]).is_ok());
/// let (at, _) = graceful_options::check_signals(["SIGINT", "SIGINT"]).unwrap_err();
/// assert_eq!(at, 1);
/// ```
pub fn check_signals<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), (usize, String)> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        check_signal(name).map_err(|e| (i, e))?;
        if seen.contains(&name) {
            return Err((i, format!("`{name}` is listed twice in `signals`")));
        }
        seen.push(name);
    }
    Ok(())
}

/// `dump_signal`: one of [`DUMP_SIGNALS`].
///
/// ```
/// assert!(graceful_options::check_dump_signal("SIGUSR1").is_ok());
/// assert!(graceful_options::check_dump_signal("SIGTERM").is_err());
/// ```
pub fn check_dump_signal(name: &str) -> Result<(), String> {
    if !DUMP_SIGNALS.contains(&name) {
        return Err(format!(
            "`dump_signal` must be `\"SIGUSR1\"`, `\"SIGUSR2\"` or `\"SIGQUIT\"`, not `{name}`"
        ));
    }
    Ok(())
}

/// A signal cannot both start a shutdown and dump the tasks.
///
/// ```
/// assert!(graceful_options::check_dump_not_in_signals("SIGUSR1", ["SIGTERM"]).is_ok());
/// assert!(graceful_options::check_dump_not_in_signals("SIGUSR1", ["SIGUSR1"]).is_err());
/// ```
pub fn check_dump_not_in_signals<'a>(
    dump: &str,
    signals: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    if signals.into_iter().any(|s| s == dump) {
        return Err(format!(
            "`{dump}` cannot both start a shutdown (in `signals`) and dump the tasks (`dump_signal`)"
        ));
    }
    Ok(())
}

/// `upgrade_signal`: one of [`UPGRADE_SIGNALS`].
///
/// ```
/// assert!(graceful_options::check_upgrade_signal("SIGUSR2").is_ok());
/// assert!(graceful_options::check_upgrade_signal("SIGTERM").is_err());
/// ```
pub fn check_upgrade_signal(name: &str) -> Result<(), String> {
    if !UPGRADE_SIGNALS.contains(&name) {
        return Err(format!(
            "`upgrade_signal` must be `\"SIGHUP\"`, `\"SIGUSR1\"` or `\"SIGUSR2\"`, not `{name}`"
        ));
    }
    Ok(())
}

/// A signal starts one thing: the upgrade signal is neither in `signals` nor the `dump_signal`.
///
/// ```
/// assert!(graceful_options::check_upgrade_signal_free("SIGUSR2", ["SIGTERM"], None).is_ok());
/// assert!(graceful_options::check_upgrade_signal_free("SIGHUP", ["SIGHUP"], None).is_err());
/// assert!(graceful_options::check_upgrade_signal_free("SIGUSR1", [], Some("SIGUSR1")).is_err());
/// ```
pub fn check_upgrade_signal_free<'a>(
    upgrade: &str,
    signals: impl IntoIterator<Item = &'a str>,
    dump: Option<&str>,
) -> Result<(), String> {
    if signals.into_iter().any(|s| s == upgrade) {
        return Err(format!(
            "`{upgrade}` cannot both start a shutdown (in `signals`) and an upgrade (`upgrade_signal`)"
        ));
    }
    if dump == Some(upgrade) {
        return Err(format!(
            "`{upgrade}` cannot both dump the tasks (`dump_signal`) and start an upgrade (`upgrade_signal`)"
        ));
    }
    Ok(())
}

/// `upgrade_timeout` is how long the new process has to become ready: zero would fail every
/// upgrade.
///
/// ```
/// use std::time::Duration;
/// assert!(graceful_options::check_upgrade_timeout(Duration::from_secs(5)).is_ok());
/// assert!(graceful_options::check_upgrade_timeout(Duration::ZERO).is_err());
/// ```
pub fn check_upgrade_timeout(timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        return Err("`upgrade_timeout` must be greater than zero".into());
    }
    Ok(())
}

/// `worker_threads` sizes a multi_thread runtime only.
///
/// ```
/// assert!(graceful_options::check_worker_threads_flavor(false, true).is_ok());
/// assert!(graceful_options::check_worker_threads_flavor(true, true).is_err());
/// ```
pub fn check_worker_threads_flavor(
    current_thread: bool,
    worker_threads: bool,
) -> Result<(), String> {
    if current_thread && worker_threads {
        return Err(
            "`worker_threads` applies to the multi_thread flavor only; remove it or use that flavor"
                .into(),
        );
    }
    Ok(())
}

/// tokio pauses the clock of a current_thread runtime only.
///
/// ```
/// assert!(graceful_options::check_start_paused_flavor(true, true).is_ok());
/// assert!(graceful_options::check_start_paused_flavor(false, true).is_err());
/// ```
pub fn check_start_paused_flavor(current_thread: bool, start_paused: bool) -> Result<(), String> {
    if start_paused && !current_thread {
        return Err(
            "`start_paused` needs the current_thread flavor, as tokio's paused clock does".into(),
        );
    }
    Ok(())
}

/// The drain delay is the first part of the grace, so it must end before the grace does.
///
/// ```
/// use std::time::Duration;
/// let s = Duration::from_secs;
/// assert!(graceful_options::check_drain_delay(s(2), s(10)).is_ok());
/// assert!(graceful_options::check_drain_delay(s(10), s(10)).is_err());
/// ```
pub fn check_drain_delay(drain_delay: Duration, grace: Duration) -> Result<(), String> {
    if !drain_delay.is_zero() && drain_delay >= grace {
        return Err(format!(
            "`drain_delay` counts inside the grace and must be shorter than `grace` ({} unless set)",
            format_duration(DEFAULT_GRACE)
        ));
    }
    Ok(())
}

/// `25s`, `250ms`: a duration as the attribute writes it.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(graceful_options::format_duration(Duration::from_secs(25)), "25s");
/// assert_eq!(graceful_options::format_duration(Duration::from_millis(250)), "250ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or sums of them like `"1m30s"`.
///
/// Written by hand rather than with a duration crate: it runs at compile time, and its errors must
/// point at the user's literal.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(graceful_options::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(graceful_options::parse_duration("10 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let malformed = || {
        format!("invalid duration `{text}`; expected a number and a unit (`ms`, `s`, `m`, `h`), like `250ms`, `10s` or `2m`")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(malformed());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| malformed())?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = rest.split_at(unit_len);
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(malformed()),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("duration `{text}` is too long"))?;
        rest = after;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "10 parsecs",
            "1.5s",
            "-1s",
            "10S",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }

    #[test]
    fn the_default_grace_is_written_as_the_attribute_writes_it() {
        assert_eq!(format_duration(DEFAULT_GRACE), "25s");
        assert_eq!(
            parse_duration(&format_duration(DEFAULT_GRACE)),
            Ok(DEFAULT_GRACE)
        );
    }

    #[test]
    fn signals_are_checked_one_by_one_and_for_repeats() {
        assert!(check_signals(["SIGINT", "CTRL_C"]).is_ok());
        assert_eq!(check_signals(["SIGINT", "SIGKILL"]).unwrap_err().0, 1);
        let (at, message) = check_signals(["SIGTERM", "SIGINT", "SIGTERM"]).unwrap_err();
        assert_eq!(at, 2);
        assert!(message.contains("listed twice"), "{message}");
    }

    #[test]
    fn a_drain_delay_must_end_inside_the_grace() {
        let s = Duration::from_secs;
        assert!(check_drain_delay(s(4), s(5)).is_ok());
        assert!(check_drain_delay(s(5), s(5)).is_err());
        assert!(check_drain_delay(Duration::ZERO, s(5)).is_ok());
    }
}
