//! What the shutdown benches share: N idle tasks in graceful (cancelled `spawn` tasks or drained
//! services), and the floor: a bare tokio runtime holding N idle tasks, dropped. Each returns the
//! time from the trigger to the runtime being gone.

use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits until `n` tasks have been polled once, so each is idle (parked) when the trigger comes.
pub async fn all_parked(polled: &AtomicUsize, n: usize) {
    while polled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Called at the trigger, and nowhere else: where `benches/shutdown_count.rs` has callgrind split
/// its count.
#[inline(never)]
pub fn at_trigger() {
    std::hint::black_box(());
}

pub fn graceful(n: usize, services: bool) -> Duration {
    let trigger = Arc::new(Mutex::new(None));
    let at = trigger.clone();
    let code = graceful::Builder::new()
        .signals([])
        .worker_threads(2)
        .run(async move {
            let polled = Arc::new(AtomicUsize::new(0));
            for _ in 0..n {
                let polled = polled.clone();
                if services {
                    graceful::spawn_service("idle", async move {
                        polled.fetch_add(1, Ordering::Relaxed);
                        graceful::shutdown_requested().await;
                    });
                } else {
                    graceful::spawn(async move {
                        polled.fetch_add(1, Ordering::Relaxed);
                        pending::<()>().await;
                    });
                }
            }
            all_parked(&polled, n).await;
            *at.lock().unwrap() = Some(Instant::now());
            at_trigger();
            graceful::shutdown();
        });
    assert_eq!(code.code(), 0);
    let started = trigger.lock().unwrap().unwrap();
    started.elapsed()
}

/// The peers' runtime: what graceful builds, multi_thread with 2 workers.
pub fn peer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The floor: a bare tokio runtime holding `n` idle `tokio::spawn` tasks, dropped. Every program
/// whose runtime holds the tasks pays this much to end; what graceful adds is the rest.
pub fn floor(n: usize) -> Duration {
    let runtime = peer_runtime();
    runtime.block_on(async {
        let polled = Arc::new(AtomicUsize::new(0));
        for _ in 0..n {
            let polled = polled.clone();
            tokio::spawn(async move {
                polled.fetch_add(1, Ordering::Relaxed);
                pending::<()>().await;
            });
        }
        all_parked(&polled, n).await;
    });
    let started = Instant::now();
    at_trigger();
    drop(runtime);
    started.elapsed()
}
