//! Signals as programs meet them: repeated deliveries that mean one request, a repeat that means
//! "now", a program that does not cooperate, a fork child, a program that goes on after `run`,
//! two runtimes in one process, and capture that cannot be set up.

mod support;

use std::time::Duration;

use support::{fixture, fixture_under, SIGINT, SIGTERM};

#[test]
fn a_repeat_within_the_first_second_is_merged_into_the_first_signal() {
    let mut child = fixture("slow_drain").start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    // Marker, not a sleep: the first delivery has been handled, so the kernel cannot merge the
    // second into it; only our own rule can.
    child.wait_for_line("shutdown started");
    child.signal(SIGTERM);
    let out = child.wait();
    out.assert_killed_by(SIGTERM).assert_stdout_has("drained");
    assert!(!out.stderr.contains("forced exit"), "{out:#?}");
}

#[test]
fn gnu_timeout_signalling_the_process_and_then_its_group_does_not_force() {
    // `timeout` sends SIGTERM to the program and then to its own process group, microseconds
    // apart: one request, and the 1.5 s drain must finish.
    let out = fixture_under("timeout", &["-s", "TERM", "2"], "slow_drain").run();
    // 124: `timeout` saw its command time out and end.
    out.assert_code(124)
        .assert_stdout_has("shutdown started")
        .assert_stdout_has("drained");
    assert!(!out.stderr.contains("forced exit"), "{out:#?}");
}

#[test]
fn second_sigint_after_the_first_second_forces_exit_while_main_ignores_the_shutdown() {
    let mut child = fixture("ignore_shutdown").start();
    child.wait_for_line("ready");
    child.signal(SIGINT);
    // The waiting line comes one second into the shutdown: from then on a repeat forces.
    let waiting = child.wait_for_stderr("waiting for");
    assert!(waiting.contains("press Ctrl-C again to force"), "{waiting}");
    child.signal(SIGINT);
    let out = child.wait();
    out.assert_killed_by(SIGINT)
        .assert_stderr_has("forced exit by SIGINT while waiting for")
        .assert_stderr_has("main");
    // The grace is 30 s: only the forced exit explains an exit this soon.
    out.assert_exited_within(Duration::from_secs(1));
}

#[test]
fn with_second_signal_ignore_only_the_deadline_ends_the_shutdown() {
    let mut child = fixture("ignore_second").start();
    child.wait_for_line("ready");
    child.signal(SIGINT);
    let waiting = child.wait_for_stderr("waiting for");
    assert!(!waiting.contains("force"), "nothing can force: {waiting}");
    child.signal(SIGINT);
    let out = child.wait();
    out.assert_killed_by(SIGINT)
        .assert_stderr_has("aborted at the deadline")
        .assert_exited_within(Duration::from_secs(3));
    assert!(!out.stderr.contains("forced exit"), "{out:#?}");
    let since = out.since_signal.unwrap();
    assert!(
        since >= Duration::from_millis(2900),
        "the deadline ended it: {out:#?}"
    );
}

#[test]
fn blocked_current_thread_runtime_still_exits_by_the_deadline() {
    let out = fixture("hog_current_thread").signal_after("ready", SIGTERM);
    // grace = 1s; the watchdog ends the process 1 s past the deadline.
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(2))
        .assert_stderr_has("overran its deadline");
}

#[test]
fn a_signal_to_a_fork_child_acts_on_the_child_not_on_the_parents_runtime() {
    let mut parent = fixture("fork_child").start();
    let line = parent.wait_for_line("child ");
    let child: i32 = line["child ".len()..].trim().parse().unwrap();
    // SAFETY: signalling the fixture's own child, never the test process.
    assert_eq!(unsafe { libc::kill(child, SIGTERM) }, 0);
    parent.wait_for_line(&format!("child ended by signal {SIGTERM}"));
    parent.signal(SIGTERM);
    let out = parent.wait();
    out.assert_killed_by(SIGTERM);
    let ended = out.stdout.find("child ended").unwrap();
    let started = out.stdout.find("shutdown started").expect("{out:#?}");
    assert!(
        ended < started,
        "the child's signal started the parent's shutdown: {out:#?}"
    );
}

#[test]
fn after_run_returns_sigint_acts_as_its_default_again() {
    let mut child = fixture("after_run").arg("default").stdin_open().start();
    child.wait_for_line("after run: ");
    child.signal(SIGINT);
    child.wait().assert_killed_by(SIGINT);
}

#[test]
fn after_run_returns_a_signal_ignored_before_it_stays_ignored() {
    let mut child = fixture("after_run").arg("ignored").stdin_open().start();
    child.wait_for_line("after run: ");
    child.signal(SIGTERM);
    // The signal is pending before this write, so it is handled before the read returns.
    child.write_stdin("go on\n");
    child.wait().assert_code(0).assert_stdout_has("still alive");
}

#[test]
fn a_later_run_captures_the_signals_again() {
    let mut child = fixture("after_run").arg("again").stdin_open().start();
    child.wait_for_line("after run: ");
    child.write_stdin("go on\n");
    child.wait_for_line("second run: ready");
    child.signal(SIGTERM);
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("second run: shutdown by Signal(SIGTERM)");
}

#[test]
fn a_second_signal_capturing_runtime_is_refused_and_a_quiet_one_runs() {
    let out = fixture("two_capturing").run();
    out.assert_code(0)
        .assert_stdout_has("capturing: panicked: graceful: another graceful runtime")
        .assert_stdout_has("quiet: ran");
}

#[test]
fn when_no_thread_can_start_the_program_does_not_start_and_leaves_no_handler() {
    // Every thread would need a petabyte of stack; the current_thread runtime needs none.
    let out = fixture("capture_fails")
        .env("RUST_MIN_STACK", "1125899906842624")
        .run();
    out.assert_killed_by(SIGTERM)
        .assert_stdout_has("run returned failure: true")
        .assert_stderr_has("graceful: cannot capture signals");
    assert!(!out.stdout.contains("main ran"), "{out:#?}");
}

#[test]
fn the_largest_grace_means_no_deadline_and_overflows_nothing() {
    let mut child = fixture("huge_grace").start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    child.wait_for_line("shutdown started, deadline true");
    let waiting = child.wait_for_stderr("waiting for");
    assert!(waiting.contains("no deadline"), "{waiting}");
    let out = child.wait();
    out.assert_killed_by(SIGTERM).assert_stdout_has("drained");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}
