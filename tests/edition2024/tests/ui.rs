//! The compile-time cases that depend on the edition, built as edition 2024: a service that never
//! returns compiles with no annotation, and a service with another output gets the message that
//! says what to do. The pass case is the workspace's own file (its `tests/ui.rs` runs it under
//! edition 2021); the failing one is a copy, since its expected output names its own path.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("../ui/pass/never_returning_services.rs");
    cases.compile_fail("tests/ui/service_output.rs");
}
