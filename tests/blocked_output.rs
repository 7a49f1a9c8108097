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
