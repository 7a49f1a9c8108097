//! Compile-time behaviour of the attributes and the API: valid uses build and run; every misuse
//! is a compile error on the offending token (committed `.stderr` files; regenerate with
//! `TRYBUILD=overwrite` and read every diff). `fail/` holds the attributes' misuses, each with a
//! `Builder` twin in `tests/options.rs`; `api/` the misuses of the runtime's types.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.compile_fail("tests/ui/api/*.rs");
}
