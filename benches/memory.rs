//! Bytes per idle tracked task over a bare `tokio::spawn` task (SPEC §9 target: ≤ 64), measured
//! with a counting global allocator: the heap growth of 100k idle tasks of each kind, divided.
//!
//! ```text
//! cargo bench --bench memory
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::pending;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const N: usize = 20_000;

/// Heap growth per task while `N` idle tasks from `spawn` are alive, all polled once.
async fn per_task(spawn: impl Fn(Arc<AtomicUsize>)) -> f64 {
    let polled = Arc::new(AtomicUsize::new(0));
    let before = LIVE.load(Ordering::SeqCst);
    for _ in 0..N {
        spawn(polled.clone());
    }
    while polled.load(Ordering::SeqCst) < N {
        tokio::task::yield_now().await;
    }
    let after = LIVE.load(Ordering::SeqCst);
    (after - before) as f64 / N as f64
}

/// The overhead of each kind for a future holding `SIZE` bytes across its `.await`.
///
/// tokio allocates a task in 128-byte-aligned cells on x86_64, so a few bytes more can cost a
/// whole cell or nothing, depending on the future: the mean over sizes is the true cost.
async fn at_size<const SIZE: usize>() -> (f64, f64, f64, f64) {
    macro_rules! idle {
        ($spawn:expr) => {
            per_task(|polled| {
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
    let tokio = idle!(tokio::spawn);
    let graceful = idle!(graceful::spawn);
    let service = idle!(|f| graceful::spawn_service("idle", f));
    // The peer: what a tokio user writes by hand for a tracked, cancellable task.
    let tracker = tokio_util::task::TaskTracker::new();
    let token = tokio_util::sync::CancellationToken::new();
    let peer = idle!(|f| {
        let token = token.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = f => {}
            }
        })
    });
    // Every size runs in a runtime of its own, so one size's idle tasks do not skew the next.
    (tokio, graceful, service, peer)
}

fn measure<const SIZE: usize>() -> (f64, f64, f64, f64) {
    let result = Arc::new(std::sync::Mutex::new((0.0, 0.0, 0.0, 0.0)));
    let out = result.clone();
    graceful::Builder::new()
        .signals([])
        .worker_threads(2)
        .grace(std::time::Duration::from_millis(100))
        // The idle services never return: their abort at the deadline is expected.
        .run(async move {
            *out.lock().unwrap() = at_size::<SIZE>().await;
            graceful::shutdown();
        });
    let figures = *result.lock().unwrap();
    figures
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: only measure when benching.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rows = [
        (0, measure::<0>()),
        (16, measure::<16>()),
        (32, measure::<32>()),
        (48, measure::<48>()),
        (64, measure::<64>()),
        (80, measure::<80>()),
        (96, measure::<96>()),
        (112, measure::<112>()),
        (128, measure::<128>()),
        (144, measure::<144>()),
        (160, measure::<160>()),
        (176, measure::<176>()),
        (192, measure::<192>()),
        (208, measure::<208>()),
        (224, measure::<224>()),
        (240, measure::<240>()),
    ];
    println!("bytes per idle task ({N} tasks each), by bytes the future holds across its .await:");
    println!("  future  tokio::spawn  graceful::spawn (over)  spawn_service (over)  tracker+token (over)");
    let (mut task_sum, mut service_sum, mut peer_sum) = (0.0, 0.0, 0.0);
    for (size, (tokio, graceful, service, peer)) in rows {
        println!(
            "  {size:6}  {tokio:12.1}  {graceful:15.1} ({:+6.1})  {service:13.1} ({:+6.1})  {peer:13.1} ({:+6.1})",
            graceful - tokio,
            service - tokio,
            peer - tokio,
        );
        task_sum += graceful - tokio;
        service_sum += service - tokio;
        peer_sum += peer - tokio;
    }
    let n = rows.len() as f64;
    println!(
        "mean overhead over bare tokio::spawn: graceful::spawn {:+.1} bytes, spawn_service {:+.1} bytes, tracker+token {:+.1} bytes",
        task_sum / n,
        service_sum / n,
        peer_sum / n
    );
}
