//! Compile-time behaviour of the attributes: valid uses build and run; every misuse is a compile
//! error on the offending token (committed `.stderr` files; regenerate with `TRYBUILD=overwrite`
//! and read every diff).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
