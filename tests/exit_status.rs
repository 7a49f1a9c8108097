//! The exit status, seen by a parent process. Each case runs twice: the fixture written with
//! `#[graceful::main]`, and the same program as `fn main() -> graceful::Exit` with `Builder`
//! (`NAME/builder`), which must end the same way.

mod support;

use support::{Fixture, SIGINT, SIGTERM};

/// The fixture `name` in both forms: with the attribute, and as `fn main() -> Exit`.
fn both(name: &str) -> [Fixture; 2] {
    [
        support::fixture(name),
        support::fixture(&format!("{name}/builder")),
    ]
}

#[test]
fn ok_main_exits_0_and_prints_nothing_of_ours() {
    for program in both("exit_ok") {
        let out = program.run();
        out.assert_code(0).assert_stdout_has("hello");
        assert_eq!(
            out.stderr, "",
            "a clean, fast shutdown writes nothing: {out:#?}"
        );
    }
}

#[test]
fn err_main_exits_1_with_the_error_on_stderr() {
    for program in both("exit_err") {
        program
            .run()
            .assert_code(1)
            .assert_stderr_has("Error: \"no config file\"");
    }
}

#[test]
fn exit_code_main_exits_with_its_code() {
    for program in both("exit_code") {
        program.run().assert_code(3);
    }
}

#[test]
fn shutdown_with_code_sets_the_status() {
    for program in both("code7") {
        program.run().assert_code(7);
    }
}

#[test]
fn panic_in_main_exits_101() {
    for program in both("panic_main") {
        program
            .run()
            .assert_code(101)
            .assert_stderr_has("boom in main");
    }
}

#[test]
fn sigterm_kills_by_sigterm_after_the_drain() {
    for program in both("wait_signal") {
        program
            .signal_after("ready", SIGTERM)
            .assert_killed_by(SIGTERM)
            .assert_stdout_has("reason Signal(SIGTERM)");
    }
}

#[test]
fn sigint_kills_by_sigint_after_the_drain() {
    for program in both("wait_signal") {
        program
            .signal_after("ready", SIGINT)
            .assert_killed_by(SIGINT)
            .assert_stdout_has("reason Signal(SIGINT)");
    }
}

#[test]
fn signal_exit_code_replaces_death_by_signal() {
    for program in both("signal_exit_code") {
        let mut child = program.start();
        child.wait_for_line("ready");
        child.signal(SIGTERM);
        child.wait().assert_code(0);
    }
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
    for name in ["self_sigterm", "self_sigterm/builder"] {
        let out = support::fixture_under("unshare", &["--pid", "--fork"], name).run();
        out.assert_stdout_has("pid 1\n")
            .assert_stdout_has("shutdown by Signal(SIGTERM)")
            .assert_code(128 + SIGTERM);
    }
}

#[test]
fn not_pid_1_the_same_program_dies_by_the_signal() {
    for program in both("self_sigterm") {
        program.run().assert_killed_by(SIGTERM);
    }
}

#[test]
fn a_shutdown_that_misses_its_deadline_after_main_returned_ok_exits_1() {
    for program in both("missed_deadline") {
        program
            .run()
            .assert_code(1)
            .assert_stderr_has("aborted at the deadline: service \"stuck\"");
    }
}

#[test]
fn shutdown_with_code_0_that_misses_its_deadline_exits_1() {
    for program in both("missed_deadline") {
        program.arg("0").run().assert_code(1);
    }
}

#[test]
fn a_missed_deadline_keeps_a_nonzero_code_as_it_is() {
    for program in both("missed_deadline") {
        program.arg("4").run().assert_code(4);
    }
}

#[test]
fn a_forced_exit_with_signal_exit_code_0_exits_1() {
    for program in both("forced_code0") {
        let mut child = program.start();
        child.wait_for_line("ready");
        child.signal(SIGTERM);
        child.wait_for_stderr("waiting for");
        child.signal(SIGTERM);
        child
            .wait()
            .assert_code(1)
            .assert_stderr_has("forced exit by SIGTERM");
    }
}

/// `run` returns after a signal-triggered shutdown, so the embedding program gets its report and
/// runs its own code; the `Exit` it returns from `main` then dies by the signal.
#[cfg(unix)]
#[test]
fn an_embedder_gets_its_report_after_sigterm_and_then_dies_by_it() {
    support::fixture("embedder")
        .signal_after("ready", SIGTERM)
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("after run: reason Some(Signal(SIGTERM)), clean true")
        .assert_stdout_has("after run: Exit { signal: SIGTERM, code: 143 }");
}
