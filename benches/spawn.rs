//! Time per spawn-and-complete: `graceful::spawn`, `graceful::spawn_service`, a spawn into a
//! nested [`graceful::Scope`], `tokio::spawn`, and
//! the hand-written `TaskTracker` + `CancellationToken` equivalent of `graceful::spawn`, on a
//! multi_thread runtime with 2 workers, from 1 and from 2 concurrent spawners.
//!
//! Every variant runs on the same graceful runtime (plain `tokio::spawn` works there too,
//! untracked), so the ratios compare spawn paths, not runtimes.
//!
//! On 2 workers, what graceful adds on the spawning worker partly overlaps with the other worker
//! completing tasks. A `current_thread` runtime, where nothing overlaps, shows the CPU cost of a
//! tracked spawn undiluted: it is measured too, as a third group.
//!
//! ```text
//! cargo bench --bench spawn
//! ```

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "common/bound.rs"]
mod bound;
#[path = "common/by_hand.rs"]
mod by_hand;
#[path = "common/spawn_host.rs"]
mod spawn_host;

use spawn_host::{Host, Kind};

fn spawn(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_and_complete");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let runs = [
        (graceful::Flavor::MultiThread, 1, "1_spawners"),
        (graceful::Flavor::MultiThread, 2, "2_spawners"),
        (graceful::Flavor::CurrentThread, 1, "current_thread"),
    ];
    for (flavor, spawners, setting) in runs {
        let host = Host::start(flavor);
        for kind in Kind::ALL {
            group.bench_function(BenchmarkId::new(format!("{kind:?}"), setting), |b| {
                b.iter_custom(|iters| host.measure(kind, spawners, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);
