//! A scope per connection must not leak: 100,000 short-lived scopes, each with work that ends,
//! leave the heap where 1,000 of them left it. A counting allocator measures it; this is its own
//! test binary so no other test's allocations are counted.

use std::sync::atomic::Ordering;

#[path = "support/counting.rs"]
mod counting;

use counting::LIVE;

async fn connections(n: usize) {
    for i in 0..n {
        let conn = graceful::scope("conn");
        let handle = conn.spawn(async move { i * 2 });
        let nested = conn.scope("request");
        nested.spawn_service("handler", async {});
        assert_eq!(handle.await.unwrap(), i * 2);
        nested.finished().await;
    }
}

#[test]
fn a_hundred_thousand_short_lived_scopes_leave_no_memory_behind() {
    let code = graceful::Builder::new()
        .signals([])
        .flavor(graceful::Flavor::CurrentThread)
        .run(async {
            // Warm up: the registry's slabs and the runtime reach their working size.
            connections(1_000).await;
            let before = LIVE.load(Ordering::Relaxed);
            connections(100_000).await;
            let after = LIVE.load(Ordering::Relaxed);
            let grown = after - before;
            // A few kilobytes of list capacity may move; a leak of even 8 bytes per scope would
            // be 800 kB.
            assert!(
                grown < 64 * 1024,
                "the heap grew by {grown} bytes over 100,000 scopes"
            );
            eprintln!("heap growth over 100,000 scopes: {grown} bytes");
        });
    assert_eq!(code, std::process::ExitCode::SUCCESS, "see the panic above");
}
