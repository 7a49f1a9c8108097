//! A service's failure is never silent: reported with its name, location and error, and under
//! `stop_on_error` it stops the program with status 1.

mod support;

use support::{fixture, SIGTERM};

fn reported() -> String {
    format!(
        "graceful: service \"loader\" at {}:6:22 failed: \"no such table\"",
        support::source("service_err")
    )
}

#[test]
fn a_failed_service_is_reported_and_the_program_goes_on() {
    let mut child = fixture("service_err").start();
    child.wait_for_line("ready");
    child.signal(SIGTERM);
    child
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("loader returned Err(\"no such table\")")
        .assert_stdout_has("shutdown by Signal(\"SIGTERM\")")
        .assert_stderr_has(&reported());
}

#[test]
fn with_stop_on_error_a_failed_service_stops_the_program_with_status_1() {
    fixture("service_err")
        .arg("stop")
        .run()
        .assert_code(1)
        .assert_stdout_has("shutdown by Failed { task: \"loader\" }")
        .assert_stderr_has(&reported());
}
