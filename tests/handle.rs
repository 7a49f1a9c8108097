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

/// Library code can tell whether it runs under graceful, and the handle it gets answers about
/// the program, its deadline included, before, during and after the run.
#[test]
fn try_current_finds_the_runtime_of_this_thread_and_none_elsewhere() {
    assert!(graceful::Handle::try_current().is_none());
    let builder = graceful::Builder::new()
        .signals([])
        .grace(std::time::Duration::from_secs(5));
    let outside = builder.handle();
    assert!(outside.deadline().is_none());
    let code = builder.run(async {
        let here = graceful::Handle::try_current().expect("a graceful runtime");
        assert!(here.deadline().is_none());
        graceful::shutdown();
        assert_eq!(here.deadline(), graceful::deadline());
        let worker = tokio::task::spawn_blocking(|| graceful::Handle::try_current().is_some());
        assert!(
            worker.await.unwrap(),
            "its blocking threads are its own too"
        );
    });
    assert_eq!(code.code(), 0, "see the panic above");
    assert!(outside.deadline().is_some(), "kept after the run");
    assert!(graceful::Handle::try_current().is_none());
}
