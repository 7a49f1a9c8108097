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
        .assert_stdout_has("shutdown by Signal(SIGTERM)")
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

/// With `RUST_BACKTRACE=1` an `anyhow` error carries a backtrace: the report's line is the error
/// and its causes on one line, cut before the backtrace (which is then never resolved).
#[test]
fn a_failed_services_error_is_one_line_without_its_backtrace() {
    let out = fixture("anyhow_service").env("RUST_BACKTRACE", "1").run();
    out.assert_code(1);
    let (_, line) = out.stderr_line("graceful: service \"loader\" at ");
    assert!(
        line.ends_with("failed: loading the user cache — Caused by: — no such table: users"),
        "{line}"
    );
    assert!(!out.stderr.contains("Stack backtrace"), "{}", out.stderr);
}

#[cfg(unix)]
fn connect_and_leave(out: &str) {
    let address = out
        .lines()
        .find_map(|line| line.strip_prefix("listening on "))
        .expect("the fixture's address");
    drop(std::net::TcpStream::connect(address).unwrap());
}

/// The trap `stop_on_error`'s docs warn of: per-connection work as a service that returns the
/// connection's error. One client that leaves mid-request stops the whole server.
#[cfg(unix)]
#[test]
fn a_connection_served_as_a_failing_service_stops_a_stop_on_error_server() {
    let mut child = fixture("connection_errors").arg("service").start();
    let line = child.wait_for_line("listening on ");
    connect_and_leave(&line);
    child
        .wait()
        .assert_code(1)
        .assert_stderr_has("graceful: service \"connection\" at ")
        .assert_stderr_has("client disconnected mid-request");
}

/// What the docs recommend instead: the connection's errors stay its own, and the server goes on.
#[cfg(unix)]
#[test]
fn a_connection_whose_errors_are_its_own_leaves_a_stop_on_error_server_serving() {
    let mut child = fixture("connection_errors").arg("task").start();
    let line = child.wait_for_line("listening on ");
    connect_and_leave(&line);
    child.wait_for_line("connection ended: client disconnected mid-request");
    child.signal(SIGTERM);
    let out = child.wait();
    out.assert_killed_by(SIGTERM);
    assert!(!out.stderr.contains("failed"), "{}", out.stderr);
}
