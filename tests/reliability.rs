//! The shutdown's guarantees when things go wrong — signal storms, a signal at every moment of
//! the sequence, racing triggers, panics everywhere, and data that must not tear.

mod support;

use std::time::Duration;

use support::{fixture, TempDir, SIGINT, SIGTERM};

fn storm(signals: impl Fn(usize) -> i32) {
    let mut child = fixture("storm").start();
    child.wait_for_line("ready");
    for i in 0..200 {
        // The process may already be gone part-way through the storm: that is the point.
        unsafe { libc::kill(child.pid(), signals(i)) };
    }
    // A storm within the first second is one request. One more, once the waiting line shows
    // that the first second is over, forces the exit.
    if child.stderr_unless_exited("waiting for").is_some() {
        unsafe { libc::kill(child.pid(), SIGTERM) };
    }
    let out = child.wait();
    let forced = out.stderr.matches("forced exit by").count();
    assert_eq!(forced, 1, "one forced exit: {out:#?}");
    assert!(
        out.stdout.matches("shutdown started by").count() <= 1,
        "{out:#?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    let killed_by = out.killed_by().expect("death by a signal");
    assert!(killed_by == SIGTERM || killed_by == SIGINT, "{out:#?}");
    // The grace is 30 s: only the forced exit explains an exit this soon.
    assert!(out.elapsed < Duration::from_secs(6), "{out:#?}");
}

#[test]
fn storm_of_200_sigterms_is_one_request_and_a_later_one_forces() {
    storm(|_| SIGTERM);
}

#[test]
fn storm_mixing_sigint_and_sigterm_is_one_request_and_a_later_one_forces() {
    storm(|i| if i % 2 == 0 { SIGINT } else { SIGTERM });
}

/// A signal sent at `moment` (the fixture prints it and lingers there for 300 ms).
fn signal_at(moment: &str) -> support::Finished {
    let mut child = fixture("moments").arg(moment).start();
    child.wait_for_line(&format!("moment: {moment}"));
    child.signal(SIGTERM);
    child.wait()
}

#[test]
fn signal_before_mains_first_await_starts_the_shutdown() {
    signal_at("before_first_await")
        .assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_millis(300));
}

#[test]
fn first_signal_during_every_step_joins_the_shutdown_and_decides_the_status() {
    // The shutdown already runs (shutdown_with_code(3)): the first signal does not force, the
    // sequence finishes, and the status is death by that signal (a signal outranks
    // shutdown_with_code).
    for moment in ["cancel", "drain", "hook", "join"] {
        let out = signal_at(moment);
        out.assert_killed_by(SIGTERM)
            .assert_exited_within(Duration::from_millis(300));
        assert!(!out.stderr.contains("forced exit"), "{moment}: {out:#?}");
    }
}

#[test]
fn signal_after_run_returned_acts_as_its_default() {
    // `run` has returned with 3; SIGTERM's default action is back and ends the process.
    signal_at("after_report").assert_killed_by(SIGTERM);
}

#[test]
fn triggers_racing_at_one_instant_start_exactly_one_shutdown_200_times() {
    let runs: Vec<support::Finished> = (0..200)
        .collect::<Vec<_>>()
        .chunks(8)
        .flat_map(|batch| {
            let children: Vec<_> = batch.iter().map(|_| fixture("race").start()).collect();
            children
                .into_iter()
                .map(|mut c| c.wait())
                .collect::<Vec<_>>()
        })
        .collect();
    for out in &runs {
        let hooks = out.stdout.matches("hook ran").count();
        assert!(hooks <= 1, "one shutdown, one run of the hooks: {out:#?}");
        assert!(!out.stderr.contains("panicked"), "{out:#?}");
        // Either trigger may win; the signal then decides the status (or forces the exit),
        // and if the signal came last, after `run` returned, main's value stands.
        let by_signal = out.killed_by() == Some(SIGTERM);
        assert!(by_signal || out.code() == Some(0), "{out:#?}");
    }
}

fn panic_at(place: &str) -> support::Finished {
    let out = fixture("panics").arg(place).signal_after("ready", SIGTERM);
    out.assert_exited_within(Duration::from_secs(1));
    if place != "main" {
        // Reported once: tokio drops a panicked future while the panic still unwinds, and that
        // drop must not count it again.
        let reports = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("graceful: ") && l.ends_with(" panicked"))
            .count();
        assert_eq!(reports, 1, "{place}: {out:#?}");
    }
    out
}

#[test]
fn panic_in_a_cancelled_tasks_drop_does_not_stop_the_sequence() {
    panic_at("drop")
        .assert_killed_by(SIGTERM)
        .assert_stderr_has("panic in a cancelled task's Drop")
        // graceful's own report, not only std's panic message: it counts like any panic.
        .assert_stderr_has(&format!("graceful: task at {}:", support::source("panics")))
        .assert_stdout_has("first hook registered, run last");
}

#[test]
fn panic_in_a_service_after_the_signal_is_reported_and_the_sequence_goes_on() {
    panic_at("service")
        .assert_killed_by(SIGTERM)
        .assert_stderr_has(&format!(
            "graceful: service \"fragile\" at {}:",
            support::source("panics")
        ))
        .assert_stdout_has("first hook registered, run last");
}

#[test]
fn panic_in_a_hook_is_reported_and_the_next_hook_runs() {
    panic_at("hook")
        .assert_killed_by(SIGTERM)
        .assert_stderr_has(&format!("graceful: hook at {}:", support::source("panics")))
        .assert_stdout_has("first hook registered, run last");
}

#[test]
fn panic_in_a_blocking_job_is_reported_and_the_sequence_goes_on() {
    panic_at("blocking")
        .assert_killed_by(SIGTERM)
        .assert_stderr_has(&format!(
            "graceful: blocking job \"fragile-job\" at {}:",
            support::source("panics")
        ))
        .assert_stdout_has("first hook registered, run last");
}

#[test]
fn panic_in_main_after_the_signal_exits_101() {
    // A panic outranks a signal.
    panic_at("main")
        .assert_code(101)
        .assert_stderr_has("panic in main after the signal")
        .assert_stdout_has("first hook registered, run last");
}

#[test]
fn records_written_before_sigterm_are_a_whole_prefix() {
    let dir = TempDir::new("records");
    let file = dir.file("records.txt");
    let mut child = fixture("records").arg(&file).start();
    child.wait_for_line("halfway");
    child.signal(SIGTERM);
    child.wait().assert_killed_by(SIGTERM);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n'), "the last record is torn");
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            format!("record {i:05} {}", "x".repeat(40)),
            "record {i}"
        );
        count += 1;
    }
    assert!(count > 1000, "stopped before the marker record: {count}");
    assert!(
        count < 10_000,
        "the signal came too late to stop anything mid-way: {count}"
    );
}
