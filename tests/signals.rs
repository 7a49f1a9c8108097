//! Signals keep working when the program does not cooperate: a second signal forces the exit, and
//! a hogged runtime still ends by the deadline.

mod support;

use std::time::Duration;

use support::{fixture, SIGINT, SIGTERM};

#[test]
fn second_sigint_forces_exit_while_main_ignores_the_shutdown() {
    let mut child = fixture("ignore_shutdown").start();
    child.wait_for_line("ready");
    child.signal(SIGINT);
    // Marker, not a sleep: the first signal has been handled, so the second is not merged into it.
    child.wait_for_line("shutdown started");
    child.signal(SIGINT);
    let out = child.wait();
    out.assert_killed_by(SIGINT)
        .assert_stderr_has("forced exit by SIGINT while waiting for")
        .assert_stderr_has("main");
    // The grace is 30 s: only the forced exit explains an exit this soon.
    out.assert_exited_within(Duration::ZERO);
}

#[test]
fn blocked_current_thread_runtime_still_exits_by_the_deadline() {
    let out = fixture("hog_current_thread").signal_after("ready", SIGTERM);
    // grace = 1s; the watchdog ends the process 1 s past the deadline.
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(2))
        .assert_stderr_has("overran its deadline");
}
