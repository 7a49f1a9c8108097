//! `graceful::Handle` from threads the runtime does not own.

mod support;

use support::fixture;

#[test]
fn a_std_thread_stops_the_program_through_a_handle() {
    let mut child = fixture("handle_thread").arg("stop").stdin_open().start();
    child.wait_for_line("ready");
    child.write_stdin("stop\n");
    child
        .wait()
        .assert_code(0)
        .assert_stdout_has("reason Requested")
        .assert_stdout_has("after run: shutting down true");
}

#[test]
fn handle_enter_makes_the_free_functions_act_on_that_runtime() {
    fixture("handle_thread")
        .arg("enter")
        .run()
        .assert_code(0)
        .assert_stdout_has("thread sees 2 tasks")
        .assert_stdout_has("service from a thread drained")
        .assert_stdout_has("reason Requested");
}

#[test]
fn a_shutdown_asked_for_before_run_starts_it_at_once_with_its_code() {
    fixture("handle_thread")
        .arg("before")
        .run()
        .assert_code(5)
        .assert_stdout_has("shutting down at start: true")
        .assert_stdout_has("reason Requested");
}
