// A re-exporter names the crate by another path; a shadowing `graceful` must not be picked up.
mod reexport {
    pub use ::graceful as inner;
}

#[allow(unused_imports)]
use std as graceful;

#[::graceful::main(crate = "reexport::inner")]
async fn main() {}
