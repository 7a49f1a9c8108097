//! The exit status, seen by a parent process.

mod support;

use support::{fixture, SIGINT, SIGTERM};

#[test]
fn ok_main_exits_0_and_prints_nothing_of_ours() {
    let out = fixture("exit_ok").run();
    out.assert_code(0).assert_stdout_has("hello");
    assert_eq!(out.stderr, "", "a clean, fast shutdown writes nothing");
}

#[test]
fn err_main_exits_1_with_the_error_on_stderr() {
    fixture("exit_err")
        .run()
        .assert_code(1)
        .assert_stderr_has("Error: \"no config file\"");
}

#[test]
fn exit_code_main_exits_with_its_code() {
    fixture("exit_code").run().assert_code(3);
}

#[test]
fn shutdown_with_code_sets_the_status() {
    fixture("code7").run().assert_code(7);
}

#[test]
fn panic_in_main_exits_101() {
    fixture("panic_main")
        .run()
        .assert_code(101)
        .assert_stderr_has("boom in main");
}

#[test]
fn sigterm_kills_by_sigterm_after_the_drain() {
    fixture("wait_signal")
        .signal_after("ready", SIGTERM)
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("reason Signal(SIGTERM)");
}

#[test]
fn sigint_kills_by_sigint_after_the_drain() {
    fixture("wait_signal")
        .signal_after("ready", SIGINT)
        .assert_killed_by(SIGINT)
        .assert_stdout_has("reason Signal(SIGINT)");
}

#[test]
fn signal_exit_code_replaces_death_by_signal() {
    let mut child = fixture("signal_exit_code").start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    child.wait().assert_code(0);
}

#[test]
fn pid_1_ignoring_the_reraised_signal_exits_128_plus_n() {
    // PID 1 of a PID namespace ignores signals whose action is the default: the re-raise does
    // nothing, and the exit must come from the `exit(128 + n)` fallback instead of a hang.
    let usable = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("note: `unshare --pid` is not available here; PID 1 behaviour not checked");
        return;
    }
    let out = support::fixture_under("unshare", &["--pid", "--fork"], "self_sigterm").run();
    out.assert_stdout_has("pid 1\n")
        .assert_stdout_has("shutdown by Signal(SIGTERM)")
        .assert_code(128 + SIGTERM);
}

#[test]
fn not_pid_1_the_same_program_dies_by_the_signal() {
    fixture("self_sigterm").run().assert_killed_by(SIGTERM);
}

#[test]
fn a_shutdown_that_misses_its_deadline_after_main_returned_ok_exits_1() {
    fixture("missed_deadline")
        .run()
        .assert_code(1)
        .assert_stderr_has("aborted at the deadline: service \"stuck\"");
}

#[test]
fn shutdown_with_code_0_that_misses_its_deadline_exits_1() {
    fixture("missed_deadline").arg("0").run().assert_code(1);
}

#[test]
fn a_missed_deadline_keeps_a_nonzero_code_as_it_is() {
    fixture("missed_deadline").arg("4").run().assert_code(4);
}

#[test]
fn a_forced_exit_with_signal_exit_code_0_exits_1() {
    let mut child = fixture("forced_code0").start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    child.wait_for_stderr("waiting for");
    child.signal(SIGTERM);
    child
        .wait()
        .assert_code(1)
        .assert_stderr_has("forced exit by SIGTERM");
}

/// `run` returns after a signal-triggered shutdown, so the embedding program gets its report and
/// runs its own code; the `Exit` it returns from `main` then dies by the signal.
#[cfg(unix)]
#[test]
fn an_embedder_gets_its_report_after_sigterm_and_then_dies_by_it() {
    fixture("embedder")
        .signal_after("ready", SIGTERM)
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("after run: reason Some(Signal(SIGTERM)), clean true")
        .assert_stdout_has("after run: Exit { signal: SIGTERM, code: 143 }");
}
