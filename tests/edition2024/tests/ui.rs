//! The compile-time cases that depend on the edition, built as edition 2024: a service that never
//! returns compiles with no annotation, and a service with another output gets the message that
//! says what to do. The same files run under edition 2021 from the workspace's `tests/ui.rs`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("../ui/pass/never_returning_services.rs");
    cases.compile_fail("../ui/api/service_output.rs");
}
