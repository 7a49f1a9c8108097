//! The four kinds, hooks, the sequence and its report, through real signals.

mod support;

use std::time::Duration;

use support::{fixture, TempDir, SIGTERM};

#[test]
fn all_1000_spawned_tasks_are_dropped_on_sigterm() {
    let mut child = fixture("cancel_1000").start();
    // 1000 tasks plus main.
    assert_eq!(child.wait_for_line("live "), "live 1001");
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("dropped 1000");
}

#[test]
fn service_ignoring_the_shutdown_is_aborted_at_the_deadline_and_named() {
    let out = fixture("stuck_service")
        .env("GRACE_MS", "1000")
        .signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(1))
        .assert_stderr_has(&format!(
            "aborted at the deadline: service \"stuck\" at {}:",
            support::source("stuck_service")
        ));
}

#[test]
fn waiting_line_names_the_stuck_service_within_2s() {
    let out = fixture("stuck_service")
        .env("GRACE_MS", "4000")
        .signal_after("ready", SIGTERM);
    let (at, line) = out.stderr_line("graceful: waiting for");
    assert!(
        at <= Duration::from_secs(2),
        "came {at:?} after the signal: {line}"
    );
    assert!(
        line.contains(&format!(
            "service \"stuck\" at {}:",
            support::source("stuck_service")
        )),
        "{line}"
    );
    assert!(
        line.contains("up to 3s more; send SIGTERM again to force"),
        "{line}"
    );
    out.assert_exited_within(Duration::from_secs(4));
}

/// No signal started this shutdown: forcing takes the first captured signal twice, a second
/// apart, and a program whose stderr is not a terminal is not told to press Ctrl-C.
#[test]
fn waiting_line_after_main_returned_says_the_signal_must_come_twice() {
    let dir = support::TempDir::new("drain-after-return");
    let release = dir.file("release");
    let mut child = fixture("drain_after_return").arg(&release).start();
    let line = child.wait_for_stderr("graceful: waiting for");
    std::fs::write(&release, "").unwrap();
    let out = child.wait();
    assert!(
        line.contains("; send SIGINT twice, a second apart, to force"),
        "{line}"
    );
    assert!(!line.contains("Ctrl-C"), "{line}");
    out.assert_code(0);
}

#[test]
fn protected_work_completes_though_its_task_is_cancelled() {
    let dir = TempDir::new("protected");
    let file = dir.file("saved");
    let mut child = fixture("protected_write").arg(&file).start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    child.wait().assert_killed_by(SIGTERM);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "saved");
}

#[test]
fn hooks_run_last_registered_first_after_the_drain_and_survive_a_panic() {
    let out = fixture("hooks").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM);
    let hooks: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("hook"))
        .collect();
    assert_eq!(
        hooks,
        ["hook C", "hook B", "hook A, worker drained: true"],
        "{out:#?}"
    );
    out.assert_stderr_has(&format!("graceful: hook at {}:", support::source("hooks")));
    out.assert_stderr_has("panicked");
}

#[test]
fn run_forever_keeps_services_running_after_main_returns() {
    let mut child = fixture("run_forever").start();
    child.wait_for_line("main returns");
    child.wait_for_line("alive after main returned");
    child.signal(SIGTERM);
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("ticker stopped");
}

#[test]
fn stop_on_panic_drains_services_and_exits_101() {
    let out = fixture("stop_on_panic").run();
    out.assert_code(101)
        .assert_stdout_has(&format!(
            "service drained, reason Panic {{ task: \"task at {}:",
            support::source("stop_on_panic")
        ))
        .assert_stderr_has(&format!("task at {}:", support::source("stop_on_panic")));
}

#[test]
fn without_stop_on_panic_a_task_panic_is_reported_and_the_program_goes_on() {
    let out = fixture("panic_goes_on").run();
    out.assert_code(0)
        .assert_stdout_has("still running, shutting down: false")
        .assert_stderr_has(&format!(
            "graceful: task at {}:",
            support::source("panic_goes_on")
        ));
}

/// A program that calls `Builder::run` and goes on must not keep graceful's signal and watchdog
/// threads (and, through them, the runtime's registry) alive after `run` returns.
#[cfg(target_os = "linux")]
#[test]
fn builder_run_leaves_no_thread_of_its_own_behind() {
    let out = fixture("threads_after_run").run();
    out.assert_code(0);
    let rounds: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("round"))
        .collect();
    assert_eq!(rounds.len(), 3, "{out:#?}");
    for round in rounds {
        assert!(!round.contains("graceful-"), "{round}");
    }
}
