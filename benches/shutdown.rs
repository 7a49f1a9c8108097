//! Time from the shutdown trigger to the runtime being gone, with N idle tasks:
//! graceful with N `spawn` tasks (cancelled) and with N services (drained), a hand-written
//! `TaskTracker` + `CancellationToken` program, and tokio-graceful-shutdown with N subsystems;
//! beside them the floor: a bare tokio runtime holding N idle tasks, dropped.
//!
//! ```text
//! cargo bench --bench shutdown
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[path = "common/shutdown_runs.rs"]
mod shutdown_runs;

use shutdown_runs::{all_parked, floor, graceful, peer_runtime};

fn tracker_token(n: usize) -> Duration {
    let runtime = peer_runtime();
    let started = runtime.block_on(async {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let polled = Arc::new(AtomicUsize::new(0));
        for _ in 0..n {
            let (token, polled) = (token.clone(), polled.clone());
            tracker.spawn(async move {
                polled.fetch_add(1, Ordering::Relaxed);
                token.cancelled().await;
            });
        }
        all_parked(&polled, n).await;
        let started = Instant::now();
        token.cancel();
        tracker.close();
        tracker.wait().await;
        started
    });
    drop(runtime);
    started.elapsed()
}

fn tokio_graceful_shutdown(n: usize) -> Duration {
    use tokio_graceful_shutdown::{SubsystemBuilder, SubsystemHandle, Toplevel};

    let runtime = peer_runtime();
    let started = runtime.block_on(async move {
        let trigger = Arc::new(Mutex::new(None));
        let at = trigger.clone();
        let polled = Arc::new(AtomicUsize::new(0));
        Toplevel::new(async move |s: &mut SubsystemHandle| {
            for _ in 0..n {
                let polled = polled.clone();
                s.start(SubsystemBuilder::new(
                    "idle",
                    async move |h: &mut SubsystemHandle| {
                        polled.fetch_add(1, Ordering::Relaxed);
                        h.on_shutdown_requested().await;
                        Ok::<(), std::io::Error>(())
                    },
                ));
            }
            all_parked(&polled, n).await;
            *at.lock().unwrap() = Some(Instant::now());
            s.request_shutdown();
        })
        .handle_shutdown_requests(Duration::from_secs(60))
        .await
        .unwrap();
        let started = trigger.lock().unwrap().unwrap();
        started
    });
    drop(runtime);
    started.elapsed()
}

fn shutdown(c: &mut Criterion) {
    let mut group = c.benchmark_group("shutdown");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for n in [1_000, 10_000, 100_000, 1_000_000] {
        let id = |name: &str| BenchmarkId::new(name.to_string(), n);
        group.bench_function(id("floor_tokio_drop"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| floor(n)).sum())
        });
        group.bench_function(id("graceful_spawn"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| graceful(n, false)).sum())
        });
        group.bench_function(id("graceful_service"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| graceful(n, true)).sum())
        });
        group.bench_function(id("tracker_token"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| tracker_token(n)).sum())
        });
        // Each subsystem is a heavier object (a tree node, a name, channels): past 100k the
        // run takes minutes, which says enough.
        if n <= 100_000 {
            group.bench_function(id("tokio_graceful_shutdown"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| tokio_graceful_shutdown(n)).sum())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, shutdown);
criterion_main!(benches);
