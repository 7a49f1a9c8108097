//! Protected work (`shutdown_waits_for`) that is aborted — by its scope's `abort()` or at a
//! deadline — tells whoever awaits it, with a panic that names it, and never leaves the awaiter
//! waiting for ever.

mod support;

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use support::{fixture, source, SLACK};

/// The grace of the fixture.
const GRACE: Duration = Duration::from_secs(1);

fn ended_in_time(finished: &support::Finished) {
    assert!(
        finished.elapsed <= GRACE + Duration::from_secs(1) + SLACK,
        "ended {:?} after the start: {finished:#?}",
        finished.elapsed
    );
}

fn awaited_from_another_scope(mode: &str) {
    let finished = fixture("protected_aborted").arg(mode).start().wait();
    ended_in_time(&finished);
    let protected = format!(
        "graceful: protected work at {}:",
        source("protected_aborted")
    );
    finished
        .assert_stdout_has("awaiter ended; panicked: true")
        .assert_stderr_has(&protected)
        .assert_stderr_has("was aborted (scope `db` was aborted)")
        .assert_stderr_has("scope `db` aborted: 1 task (protected future in db at ")
        .assert_stderr_has("service \"awaiter\" in api at ");
    assert!(
        !finished
            .stderr
            .contains("JoinHandle polled after completion"),
        "{finished:#?}"
    );
    // The awaiter's panic is reported; without `stop_on_panic` the status is `main`'s.
    finished.assert_code(0);
}

#[test]
fn protected_work_aborted_by_its_scope_panics_its_awaiter_in_another_scope() {
    awaited_from_another_scope("abort");
}

#[test]
fn protected_work_aborted_by_its_scope_panics_its_awaiter_under_a_timeout() {
    awaited_from_another_scope("abort_timeout");
}

#[test]
fn protected_work_aborted_at_its_scopes_deadline_panics_its_awaiter_in_the_root() {
    let finished = fixture("protected_aborted")
        .arg("scope_deadline")
        .start()
        .wait();
    ended_in_time(&finished);
    finished
        .assert_stdout_has("db aborted 1")
        .assert_stdout_has("awaiter ended; panicked: true")
        .assert_stderr_has("was aborted (scope `db` reached its deadline)")
        .assert_stderr_has("service \"awaiter\" at ")
        .assert_code(0);
}

/// Both are aborted at the program's deadline: whichever goes first, both are named and the exit
/// still comes by the deadline plus a second.
#[test]
fn protected_work_aborted_at_the_deadline_is_reported_with_its_awaiting_service() {
    let finished = fixture("protected_aborted").arg("deadline").start().wait();
    ended_in_time(&finished);
    // Both are named: aborted at the deadline, or the awaiter panicking on the abort.
    finished
        .assert_stderr_has("service \"awaiter\" at ")
        .assert_stderr_has("protected future at ")
        .assert_code(1);
}

#[test]
fn main_awaiting_aborted_protected_work_exits_1_not_as_a_panic() {
    let finished = fixture("protected_aborted").arg("main").start().wait();
    ended_in_time(&finished);
    finished
        .assert_stderr_has("was aborted (scope `db` was aborted)")
        .assert_code(1);
}

#[test]
fn polling_protected_work_again_after_it_resolved_panics_saying_so() {
    let code = graceful::Builder::new().signals([]).run(async {
        let mut saved = graceful::shutdown_waits_for(async { 7 });
        assert_eq!((&mut saved).await, 7);
        let again = catch_unwind(AssertUnwindSafe(|| {
            let _ = Pin::new(&mut saved).poll(&mut Context::from_waker(Waker::noop()));
        }))
        .unwrap_err();
        let message = again
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| again.downcast_ref::<String>().cloned())
            .unwrap();
        assert_eq!(message, "ShutdownWaitsFor polled after completion");
    });
    assert_eq!(code.code(), 0, "see the panic above");
}
