//! Production integrations, with real sockets and signals: systemd's notify protocol,
//! the drain delay for load balancers, and the live task dump.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::{fixture, TempDir, SIGTERM};

/// A stand-in for systemd: the socket a `Type=notify` unit's `NOTIFY_SOCKET` names.
struct Manager {
    socket: UnixDatagram,
    _dir: TempDir,
    path: std::path::PathBuf,
}

impl Manager {
    fn new(test: &str) -> Manager {
        let dir = TempDir::new(test);
        let path = dir.file("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Manager {
            socket,
            _dir: dir,
            path,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notify message within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Messages until one starts with `prefix` (bounded by the read timeout).
    fn until(&self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = self.next();
            let done = message.starts_with(prefix);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

#[test]
fn systemd_hears_ready_watchdog_pings_then_stopping_with_pings_during_the_drain() {
    let manager = Manager::new("notify");
    let mut child = fixture("systemd_ready")
        .env("NOTIFY_SOCKET", manager.path.to_str().unwrap())
        .env("WATCHDOG_USEC", "200000")
        .start();
    child.wait_for_line("ready");
    let before = manager.until("READY=1");
    assert!(
        before.iter().all(|m| m == "WATCHDOG=1" || m == "READY=1"),
        "{before:?}"
    );
    // Pings every 100 ms (half of WATCHDOG_USEC) while the program runs.
    assert_eq!(manager.next(), "WATCHDOG=1");
    assert_eq!(manager.next(), "WATCHDOG=1");
    child.signal(SIGTERM);
    let running = manager.until("STOPPING=1");
    assert!(
        running[..running.len() - 1]
            .iter()
            .all(|m| m == "WATCHDOG=1"),
        "READY is sent once: {running:?}"
    );
    assert_eq!(
        running.last().unwrap(),
        "STOPPING=1\nEXTEND_TIMEOUT_USEC=26000000",
        "the stop may take the whole 25 s grace, plus a second"
    );
    // The service drains for 600 ms: the pings go on meanwhile.
    assert_eq!(manager.next(), "WATCHDOG=1");
    child.wait().assert_killed_by(SIGTERM);
}

#[test]
fn notify_ready_auto_sends_ready_when_main_first_awaits() {
    let manager = Manager::new("notify-auto");
    let mut child = fixture("systemd_auto")
        .env("NOTIFY_SOCKET", manager.path.to_str().unwrap())
        .start();
    child.wait_for_line("starting up");
    assert_eq!(manager.next(), "READY=1");
    child.signal(SIGTERM);
    assert!(manager.next().starts_with("STOPPING=1"));
    child.wait().assert_killed_by(SIGTERM);
}

#[test]
fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
    let out = fixture("systemd_ready").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM);
    assert_eq!(out.stderr, "", "{out:#?}");
}

#[test]
fn drain_delay_keeps_tasks_alive_while_is_shutting_down_is_true() {
    let out = fixture("drain_delay").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "ready",
            "task alive while shutting down, token cancelled: false",
            "task cancelled after the delay"
        ],
        "{out:#?}"
    );
    let since = out.since_signal.unwrap();
    assert!(
        since >= Duration::from_millis(500),
        "the delay was cut short: {since:?}"
    );
    out.assert_exited_within(Duration::from_millis(500));
}

#[test]
fn dump_signal_prints_the_task_table_and_the_program_keeps_running() {
    let mut child = fixture("dump").start();
    child.wait_for_line("ready");
    child.signal(libc::SIGUSR1);
    let row = child.wait_for_stderr("reporter");
    assert!(row.contains("service"), "{row}");
    assert!(
        row.contains(&format!("{}:4:", support::source("dump"))),
        "{row}"
    );
    child.wait_for_stderr("crunch");
    // Still running: the next signal is the one that stops it.
    child.signal(SIGTERM);
    let out = child.wait();
    out.assert_killed_by(SIGTERM)
        .assert_stdout_has("stopped by Signal(SIGTERM)")
        .assert_stderr_has("graceful: 3 live tracked tasks")
        .assert_stderr_has("KIND");
}
