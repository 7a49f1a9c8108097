//! The blocking kind and the join of the blocking pool: no blocking work holds the exit past the deadline.

mod support;

use std::time::Duration;

use support::{fixture, TempDir, SIGTERM};

#[test]
fn job_watching_its_stop_flag_stops_promptly_and_writes_its_last_record() {
    let dir = TempDir::new("blocking-stop");
    let file = dir.file("record");
    let mut child = fixture("blocking_stop").arg(&file).start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    // The grace is the default 25 s: an exit within 1 s (+ slack) is the job obeying its flag.
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(1));
    let record = std::fs::read_to_string(&file).unwrap();
    assert!(record.starts_with("stopped after "), "{record}");
}

#[test]
fn job_ignoring_its_flag_is_abandoned_by_name_without_a_hang_or_a_panic() {
    let out = fixture("blocking_ignore").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(1))
        .assert_stderr_has(&format!(
            "abandoned at the deadline (still running): blocking job \"sleeper\" at {}:",
            support::source("blocking_ignore")
        ));
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn job_finishing_after_the_runtime_is_gone_is_silent() {
    let dir = TempDir::new("blocking-late");
    let file = dir.file("late");
    let out = fixture("blocking_late").arg(&file).run();
    out.assert_code(3);
    let late = std::fs::read_to_string(&file).expect("the late job ran to its end");
    // Only the job itself is still tracked: the task and job it tried to start never ran.
    assert_eq!(late, "late job ran: shutting_down=true tasks=[\"late\"]");
    // The one expected line names the job; nothing else, and nothing about a panic.
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("graceful: ")),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    out.assert_stderr_has("blocking job \"late\"");
}

#[test]
fn untracked_spawn_blocking_does_not_hold_the_exit() {
    fixture("untracked_blocking")
        .signal_after("ready", SIGTERM)
        .assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(1));
}

#[test]
fn task_reading_stdin_forever_does_not_hold_the_exit() {
    fixture("stdin_reader")
        .stdin_open()
        .signal_after("ready", SIGTERM)
        .assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(1));
}
