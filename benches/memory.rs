//! Bytes per idle tracked task over a bare `tokio::spawn` task (target: ≤ 64), measured
//! with a counting global allocator: the heap growth of N idle tasks of each kind, divided by N.
//!
//! Two things make a single figure lie, so it sweeps both:
//! - tokio allocates a task in 128-byte-aligned cells on x86_64, so the few bytes graceful adds
//!   inside a task cost a whole cell or nothing, depending on the future's size: it sweeps sizes
//!   in 8-byte steps, and the mean over sizes is the true cost;
//! - the registry's slab grows by doubling, so its slack per task depends on N: it sweeps N,
//!   including 16,385 (one past a power of two, the worst case).
//!
//! ```text
//! cargo bench --bench memory
//! ```

use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[path = "../tests/support/counting.rs"]
mod counting;

use counting::LIVE;

/// N for the sweep over future sizes.
const N: usize = 20_000;

/// Heap growth per task while `n` idle tasks from `spawn` are alive, all polled once.
async fn per_task(n: usize, spawn: impl Fn(Arc<AtomicUsize>)) -> f64 {
    let polled = Arc::new(AtomicUsize::new(0));
    let before = LIVE.load(Ordering::SeqCst);
    for _ in 0..n {
        spawn(polled.clone());
    }
    while polled.load(Ordering::SeqCst) < n {
        tokio::task::yield_now().await;
    }
    let after = LIVE.load(Ordering::SeqCst);
    (after - before) as f64 / n as f64
}

/// The kinds of task measured, in the order of the table's columns.
#[derive(Clone, Copy)]
enum Kind {
    Tokio,
    Graceful,
    Service,
    Peer,
    Scoped,
}

/// Bytes per task of `kind` for `n` futures holding `SIZE` bytes across their `.await`.
async fn at_size<const SIZE: usize>(n: usize, kind: Kind) -> f64 {
    macro_rules! idle {
        ($spawn:expr) => {
            per_task(n, |polled| {
                drop($spawn(async move {
                    let payload = std::hint::black_box([0u8; SIZE]);
                    polled.fetch_add(1, Ordering::SeqCst);
                    pending::<()>().await;
                    std::hint::black_box(&payload);
                }));
            })
            .await
        };
    }
    match kind {
        Kind::Tokio => idle!(tokio::spawn),
        Kind::Graceful => idle!(graceful::spawn),
        Kind::Service => idle!(|f| graceful::spawn_service("idle", f)),
        Kind::Scoped => {
            // A spawn into a scope two levels down: what scopes add per task.
            let nested = graceful::scope("bench").scope("nested");
            idle!(|f| nested.spawn(f))
        }
        Kind::Peer => {
            // What a tokio user writes by hand for a tracked, cancellable task.
            let tracker = tokio_util::task::TaskTracker::new();
            let token = tokio_util::sync::CancellationToken::new();
            idle!(|f| {
                let token = token.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = f => {}
                    }
                })
            })
        }
    }
}

type Figures = (f64, f64, f64, f64, f64);

/// Every kind is measured in a runtime of its own: one kind's idle tasks would leave the
/// registry's slab grown for the next, which would then look cheaper than it is.
fn measure<const SIZE: usize>(n: usize) -> Figures {
    let one = |kind: Kind| {
        let result = Arc::new(std::sync::Mutex::new(0.0));
        let out = result.clone();
        let _ = graceful::Builder::new()
            .signals([])
            .worker_threads(2)
            .grace(std::time::Duration::from_millis(100))
            // The idle services never return: their abort at the deadline is expected.
            .run(async move {
                *out.lock().unwrap() = at_size::<SIZE>(n, kind).await;
                graceful::shutdown();
            });
        let figure = *result.lock().unwrap();
        figure
    };
    (
        one(Kind::Tokio),
        one(Kind::Graceful),
        one(Kind::Service),
        one(Kind::Peer),
        one(Kind::Scoped),
    )
}

/// Prints one row per measurement and the mean overhead of each kind over bare `tokio::spawn`.
fn table(title: &str, column: &str, rows: &[(usize, Figures)]) {
    println!("{title}");
    println!("  {column:>7}  tokio::spawn  graceful::spawn (over)  spawn_service (over)  tracker+token (over)  scope.spawn (over)");
    let (mut task, mut service, mut peer, mut in_scope) = (0.0, 0.0, 0.0, 0.0);
    for &(at, (tokio, graceful, svc, hand, scoped)) in rows {
        println!(
            "  {at:7}  {tokio:12.1}  {graceful:15.1} ({:+6.1})  {svc:13.1} ({:+6.1})  {hand:13.1} ({:+6.1})  {scoped:11.1} ({:+6.1})",
            graceful - tokio,
            svc - tokio,
            hand - tokio,
            scoped - tokio,
        );
        task += graceful - tokio;
        service += svc - tokio;
        peer += hand - tokio;
        in_scope += scoped - tokio;
    }
    let n = rows.len() as f64;
    println!(
        "  mean overhead over bare tokio::spawn: graceful::spawn {:+.1} B, spawn_service {:+.1} B, tracker+token {:+.1} B, scope.spawn {:+.1} B\n",
        task / n,
        service / n,
        peer / n,
        in_scope / n
    );
}

/// One row per future size, 0 to 248 bytes in 8-byte steps.
macro_rules! by_size {
    ($($size:literal)*) => {
        [$(($size, measure::<$size>(N))),*]
    };
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: only measure when benching.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes = by_size!(
        0 8 16 24 32 40 48 56 64 72 80 88 96 104 112 120
        128 136 144 152 160 168 176 184 192 200 208 216 224 232 240 248
    );
    table(
        &format!(
            "bytes per idle task ({N} tasks each), by bytes the future holds across its .await:"
        ),
        "future",
        &sizes,
    );
    let counts: Vec<_> = [1_000, 16_384, 16_385, 20_000, 100_000]
        .into_iter()
        .map(|n| (n, measure::<16>(n)))
        .collect();
    table(
        "bytes per idle task holding 16 bytes, by how many tasks are alive:",
        "tasks",
        &counts,
    );
}
