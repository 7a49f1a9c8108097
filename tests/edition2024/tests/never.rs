//! A service that never returns runs like any other under edition 2024: drained, then aborted at
//! the deadline and reported.

use std::time::Duration;

#[test]
fn a_service_that_never_returns_is_aborted_at_the_deadline() {
    let (_, report) = graceful::Builder::new()
        .signals([])
        .grace(Duration::from_millis(200))
        .run_with_report(async {
            graceful::spawn_service("ticker", async {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        });
    let aborted: Vec<_> = report.aborted.iter().map(|t| &*t.name).collect();
    assert_eq!(aborted, ["ticker"]);
}
