//! A stdout or stderr that blocks — a pipe nobody reads, with a thread stuck writing into it and
//! holding std's lock — must not stop the process from ending: by the deadline plus a second,
//! and at once on a forcing signal.

mod support;

use std::time::Duration;

use support::{fixture, Stream, SIGTERM};

fn blocked(stream: Stream, grace_secs: u64) -> support::Running {
    let name = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let mut child = fixture("blocked_output")
        .arg(name)
        .arg(grace_secs.to_string())
        .unread(stream)
        .start();
    match stream {
        Stream::Stdout => child.wait_for_stderr("ready: the pipe is full"),
        Stream::Stderr => child.wait_for_line("ready: the pipe is full"),
    };
    child
}

/// The writer never stops: it is abandoned at the 1 s deadline; the exit comes by 2 s.
fn exit_is_bounded_with(stream: Stream) {
    let mut child = blocked(stream, 1);
    child.signal(SIGTERM);
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(2));
}

#[test]
fn exit_is_bounded_with_stderr_blocked() {
    exit_is_bounded_with(Stream::Stderr);
}

#[test]
fn exit_is_bounded_with_stdout_blocked() {
    exit_is_bounded_with(Stream::Stdout);
}

#[test]
fn a_forcing_signal_ends_the_process_at_once_with_stderr_blocked() {
    let mut child = blocked(Stream::Stderr, 30);
    child.signal(SIGTERM);
    child.wait_for_line("past the first second");
    child.signal(SIGTERM);
    // The grace is 30 s; the marker comes 1.2 s in: only the forced exit explains this.
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(2));
}

/// The upgrade starts on the signal thread, and its progress line goes to a `tracing`
/// subscriber on the blocked stdout: the thread must hand it on, not write it, or it would never
/// hear the SIGINTs that follow.
#[cfg(unix)]
#[test]
fn an_upgrade_with_a_subscriber_on_a_blocked_stdout_leaves_ctrl_c_working() {
    use std::time::Instant;

    let dir = support::TempDir::new("upgrade-blocked-stdout");
    let started = dir.file("started");
    let command = format!(
        "echo $$ > {}; exec sleep 30 </dev/null >/dev/null 2>&1",
        started.display()
    );
    let mut child = fixture("upgrade_blocked_stdout")
        .arg(&command)
        .unread(Stream::Stdout)
        .start();
    child.wait_for_stderr("ready: stdout is full");
    child.signal(libc::SIGUSR2);
    let limit = Instant::now() + support::TIMEOUT;
    let pid = loop {
        let written = std::fs::read_to_string(&started).unwrap_or_default();
        if let Ok(pid) = written.trim().parse::<u32>() {
            break pid;
        }
        assert!(
            Instant::now() < limit,
            "the upgrade never started its new process"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _orphans = support::Orphans(vec![pid]);
    child.signal(support::SIGINT);
    child.wait_for_stderr("past the first second");
    let forced = Instant::now();
    child.signal(support::SIGINT);
    child.wait().assert_killed_by(support::SIGINT);
    assert!(
        forced.elapsed() <= Duration::from_secs(2) + support::SLACK,
        "the forced exit took {:?}",
        forced.elapsed()
    );
}
