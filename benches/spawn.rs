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

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tokio,
    Graceful,
    GracefulService,
    /// `scope.spawn` into a scope two levels below the root.
    GracefulNestedScope,
    TrackerToken,
}

/// Tasks spawned before their handles are awaited: keeps memory flat for any `iters`.
const CHUNK: u64 = 1024;

async fn spawn_and_complete(
    kind: Kind,
    count: u64,
    tracker: TaskTracker,
    token: CancellationToken,
    nested: graceful::Scope,
) {
    let mut done = 0;
    while done < count {
        let chunk = CHUNK.min(count - done);
        match kind {
            Kind::Tokio => {
                let handles: Vec<_> = (0..chunk).map(|_| tokio::spawn(async {})).collect();
                for handle in handles {
                    handle.await.unwrap();
                }
            }
            Kind::Graceful => {
                let handles: Vec<_> = (0..chunk).map(|_| graceful::spawn(async {})).collect();
                for handle in handles {
                    handle.await.unwrap();
                }
            }
            Kind::GracefulNestedScope => {
                let handles: Vec<_> = (0..chunk).map(|_| nested.spawn(async {})).collect();
                for handle in handles {
                    handle.await.unwrap();
                }
            }
            Kind::GracefulService => {
                let handles: Vec<_> = (0..chunk)
                    .map(|_| graceful::spawn_service("bench", async {}))
                    .collect();
                for handle in handles {
                    handle.await.unwrap();
                }
            }
            Kind::TrackerToken => {
                // What a tokio user writes by hand for a tracked task that a shutdown cancels.
                let handles: Vec<_> = (0..chunk)
                    .map(|_| {
                        let token = token.clone();
                        tracker.spawn(async move {
                            tokio::select! {
                                biased;
                                _ = token.cancelled() => None,
                                value = async {} => Some(value),
                            }
                        })
                    })
                    .collect();
                for handle in handles {
                    handle.await.unwrap();
                }
            }
        }
        done += chunk;
    }
}

struct Job {
    kind: Kind,
    spawners: u64,
    iters: u64,
    reply: mpsc::Sender<Duration>,
}

/// A graceful runtime on its own thread, running measurement jobs sent by criterion's thread.
struct Host {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    fn start(flavor: graceful::Flavor) -> Host {
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let thread = std::thread::spawn(move || {
            let builder = graceful::Builder::new().signals([]).flavor(flavor);
            let builder = match flavor {
                graceful::Flavor::MultiThread => builder.worker_threads(2),
                _ => builder,
            };
            builder.run(async move {
                let tracker = TaskTracker::new();
                let token = CancellationToken::new();
                let nested = graceful::scope("bench").scope("nested");
                while let Some(job) = queue.recv().await {
                    let per = job.iters.div_ceil(job.spawners);
                    let start = Instant::now();
                    // The spawners are tasks on the workers, as spawning code usually is.
                    let drivers: Vec<_> = (0..job.spawners)
                        .map(|_| {
                            tokio::spawn(spawn_and_complete(
                                job.kind,
                                per,
                                tracker.clone(),
                                token.clone(),
                                nested.clone(),
                            ))
                        })
                        .collect();
                    for driver in drivers {
                        driver.await.unwrap();
                    }
                    let _ = job.reply.send(start.elapsed());
                }
            });
        });
        Host {
            jobs,
            thread: Some(thread),
        }
    }

    fn measure(&self, kind: Kind, spawners: u64, iters: u64) -> Duration {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Job {
                kind,
                spawners,
                iters,
                reply,
            })
            .unwrap();
        answer.recv().unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let (jobs, _) = tokio::sync::mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.jobs, jobs));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

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
        for kind in [
            Kind::Tokio,
            Kind::Graceful,
            Kind::GracefulService,
            Kind::GracefulNestedScope,
            Kind::TrackerToken,
        ] {
            group.bench_function(BenchmarkId::new(format!("{kind:?}"), setting), |b| {
                b.iter_custom(|iters| host.measure(kind, spawners, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);
