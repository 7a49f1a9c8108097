//! A scope per connection must not leak: 100,000 short-lived scopes, each with work that ends (or
//! a hook), leave the heap where 1,000 of them left it. A counting allocator measures it; this is its own
//! test binary so no other test's allocations are counted.

use std::sync::atomic::Ordering;

#[path = "support/counting.rs"]
mod counting;

use counting::LIVE;

/// The tests count one allocator: they take turns.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
    let _alone = alone();
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
    assert_eq!(code.code(), 0, "see the panic above");
}

/// Scopes with a hook each, their handles dropped: half after their own shutdown, half never shut
/// down, so their hooks run when they are freed.
async fn scopes_with_hooks(n: usize, ran: &std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    for i in 0..n {
        let tenant = graceful::scope("tenant");
        let counter = ran.clone();
        tenant.on_shutdown(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        tenant.spawn(async move { i * 2 }).await.unwrap();
        if i % 2 == 0 {
            assert!(tenant.shutdown().await.is_clean());
        }
    }
}

/// Waits until `n` hooks have run, for at most ten seconds.
async fn hooks_ran(ran: &std::sync::atomic::AtomicUsize, n: usize) {
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while ran.load(Ordering::SeqCst) < n {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{} of {n} hooks ran",
        ran.load(Ordering::SeqCst)
    );
}

#[test]
fn a_hundred_thousand_scopes_with_hooks_run_each_hook_once_and_leave_no_memory_behind() {
    let _alone = alone();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = ran.clone();
    let code = graceful::Builder::new()
        .signals([])
        .flavor(graceful::Flavor::CurrentThread)
        .run(async move {
            scopes_with_hooks(1_000, &counted).await;
            hooks_ran(&counted, 1_000).await;
            let before = LIVE.load(Ordering::Relaxed);
            scopes_with_hooks(100_000, &counted).await;
            hooks_ran(&counted, 101_000).await;
            let after = LIVE.load(Ordering::Relaxed);
            let grown = after.saturating_sub(before);
            assert!(
                grown < 64 * 1024,
                "the heap grew by {grown} bytes over 100,000 scopes with hooks"
            );
            eprintln!("heap growth over 100,000 scopes with hooks: {grown} bytes");
        });
    assert_eq!(code.code(), 0, "see the panic above");
    // None ran a second time at the program's shutdown.
    assert_eq!(ran.load(Ordering::SeqCst), 101_000);
}
