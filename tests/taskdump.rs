//! Where stuck work waits: with the `taskdump` feature and `--cfg tokio_unstable`, the report
//! shows under each stuck task its await chain, from one bounded task dump. The fixture is built
//! in a target directory of its own (see `support::taskdump_fixture`); tokio dumps only on Linux.

#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use support::{taskdump_fixture, SIGTERM, SLACK};

/// The frame of the fixture's function `function` waiting at the line that holds `code`, as the
/// report prints it: `fixture::taskdump_stuck::flusher at tests/fixtures/…/taskdump_stuck.rs:19`.
fn frame(function: &str, code: &str) -> String {
    let source = std::fs::read_to_string(support::source("taskdump_stuck")).unwrap();
    let line = source
        .lines()
        .position(|line| line.contains(code))
        .unwrap_or_else(|| panic!("`{code}` is in the fixture"));
    format!(
        "taskdump_stuck::{function} at tests/fixtures/src/fixtures/taskdump_stuck.rs:{}",
        line + 1
    )
}

#[test]
fn the_abort_at_the_deadline_shows_where_the_stuck_service_waits() {
    let out = taskdump_fixture("taskdump_stuck")
        .env("MODE", "abort")
        .signal_after("ready", SIGTERM);
    // grace = 3s: aborted at the deadline, then the exit by the signal, as without the feature.
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(3) + SLACK);
    let flusher = frame("flusher", "flush_to_db().await");
    let flush = frame("flush_to_db", "tokio::time::sleep(");

    // The printed report: the abort line, then the chain under it, outermost first, with tokio's
    // frames folded.
    let stderr = &out.stderr;
    let abort = stderr
        .find("aborted at the deadline: service \"flusher\"")
        .unwrap_or_else(|| panic!("no abort line: {out:#?}"));
    let chain = &stderr[abort..];
    let (outer, inner) = (chain.find(&flusher), chain.find(&flush));
    assert!(
        matches!((outer, inner), (Some(o), Some(i)) if o < i),
        "the chain under the abort line names {flusher} and then {flush}: {out:#?}"
    );
    assert!(chain.contains("frames in tokio"), "{out:#?}");

    // The `Report` the program got carries the same chain.
    let reported = out
        .stdout
        .lines()
        .find(|line| line.starts_with("aborted service \"flusher\""))
        .unwrap_or_else(|| panic!("no aborted service in the Report: {out:#?}"));
    assert!(
        reported.contains(&flusher) && reported.contains(&flush),
        "{reported}"
    );

    // The first waiting line, a second in, took its own dump: the chain is in the lines under it.
    let waiting = stderr
        .find("waiting for")
        .unwrap_or_else(|| panic!("no waiting line: {out:#?}"));
    let block = stderr[waiting..].split("\ngraceful: ").next().unwrap();
    assert!(
        block.contains(&flush),
        "the waiting line shows the chain: {out:#?}"
    );
    assert!(!stderr.contains("could not take a task dump"), "{out:#?}");
}

#[test]
fn the_dump_signal_table_shows_each_tasks_chain_on_a_current_thread_runtime() {
    let mut child = taskdump_fixture("taskdump_stuck")
        .env("MODE", "signal")
        .start();
    child.wait_for_line("ready");
    child.signal(libc::SIGUSR1);
    child.wait_for_stderr(&frame("flush_to_db", "tokio::time::sleep("));
    // Still running: the dump changed nothing; the next signal stops it.
    child.signal(SIGTERM);
    let out = child.wait();
    out.assert_killed_by(SIGTERM)
        .assert_stderr_has("live tracked tasks");
}

#[test]
fn a_wedged_runtime_cannot_be_dumped_says_so_in_one_line_and_exits_as_without_the_feature() {
    let out = taskdump_fixture("taskdump_stuck")
        .env("MODE", "wedge")
        .signal_after("ready", SIGTERM);
    // `main` blocks the only thread: the watchdog ends the process a second past the deadline.
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(4) + SLACK)
        .assert_stderr_has("overran its deadline");
    let notices = out
        .stderr
        .matches("could not take a task dump within 250ms")
        .count();
    assert_eq!(notices, 1, "{out:#?}");
    assert!(out.stderr.contains("waiting for"), "{out:#?}");
}

#[test]
fn a_worker_blocked_in_one_poll_is_not_stopped_for_a_dump_and_the_exit_is_as_without_it() {
    let out = taskdump_fixture("taskdump_stuck")
        .env("MODE", "hog")
        .signal_after("ready", SIGTERM);
    // `hog` blocks a worker from the signal on: the abort cannot end it, the exit still comes.
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(4) + SLACK)
        .assert_stderr_has("aborted at the deadline: service \"flusher\"");
    // Asked twice (the waiting line, the abort), refused twice, each in one line.
    let refusals = out
        .stderr
        .matches("took no task dump: a worker thread has been in one poll for")
        .count();
    assert_eq!(refusals, 2, "{out:#?}");
    assert!(
        !out.stderr.contains("could not take a task dump"),
        "{out:#?}"
    );
}
