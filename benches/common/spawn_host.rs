//! What the spawn benches share: the spawn variants, and a graceful runtime on its own thread
//! that runs a measurement job per request.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tokio,
    Graceful,
    GracefulService,
    /// `scope.spawn` into a scope two levels below the root.
    GracefulNestedScope,
    TrackerToken,
    /// The least any registry beside tokio's task list costs: `common/bound.rs`. One global store,
    /// so with 2 spawners it measures their fight over its lock more than the bound.
    Bound,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Tokio,
        Kind::Graceful,
        Kind::GracefulService,
        Kind::GracefulNestedScope,
        Kind::TrackerToken,
        Kind::Bound,
    ];
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
    // Each variant's loop is compiled on its own, as in `spawn_count.rs`. That does not make a
    // variant's time independent of the rest of the binary: `BENCHMARKS.md` ("Paired rounds")
    // says by how much adding a variant moved another's.
    match kind {
        Kind::Tokio => spawn_all(count, || tokio::spawn(async {})).await,
        Kind::Graceful => spawn_all(count, || graceful::spawn(async {})).await,
        Kind::GracefulNestedScope => spawn_all(count, || nested.spawn(async {})).await,
        Kind::GracefulService => {
            spawn_all(count, || graceful::spawn_service("bench", async {})).await
        }
        Kind::TrackerToken => spawn_all(count, || crate::by_hand::spawn(&tracker, &token)).await,
        Kind::Bound => spawn_all(count, || crate::bound::spawn(async {})).await,
    }
}

/// Spawns `count` tasks with `spawn`, [`CHUNK`] at a time, awaiting each chunk.
#[inline(never)]
async fn spawn_all<T>(count: u64, spawn: impl Fn() -> tokio::task::JoinHandle<T>) {
    let mut done = 0;
    while done < count {
        let chunk = CHUNK.min(count - done);
        let handles: Vec<_> = (0..chunk).map(|_| spawn()).collect();
        for handle in handles {
            handle.await.unwrap();
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

/// A graceful runtime on its own thread, running measurement jobs sent by the bench's own thread.
pub struct Host {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    pub fn start(flavor: graceful::Flavor) -> Host {
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let thread = std::thread::spawn(move || {
            let builder = graceful::Builder::new().signals([]).flavor(flavor);
            let builder = match flavor {
                graceful::Flavor::MultiThread => builder.worker_threads(2),
                _ => builder,
            };
            // A run without signals owes no death by one: its `Exit` has nothing to carry out.
            let _ = builder.run(async move {
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

    /// Runs `iters` spawn-and-completes of `kind` from `spawners` spawning tasks; their time.
    pub fn measure(&self, kind: Kind, spawners: u64, iters: u64) -> Duration {
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
