//! Instructions per spawn-and-complete, counted by callgrind rather than timed: a count does not
//! move with the load of a shared machine. Run the program at two task counts and subtract, so
//! start-up cancels out:
//!
//! ```text
//! cargo bench --bench spawn_count --no-run    # prints the executable's path, BIN below
//! for n in 8192 16384; do valgrind --tool=callgrind --callgrind-out-file=/dev/null BIN graceful $n; done
//! ```
//!
//! (instructions at 16384 − instructions at 8192) / 8192 is the figure per task. The first
//! argument picks the spawn: `tokio`, `graceful`, `service`, `scoped` (into a scope two levels
//! down), `tracker` (a hand-written `TaskTracker` + `CancellationToken` task), or `bound`: the
//! least that any registry kept beside tokio's own task list can do (see [`bound`]). All run on
//! the same `current_thread` graceful runtime.
//!
//! Every kind runs once before the measured one, whichever is measured: an aligned allocation
//! (tokio's tasks are) costs glibc more or less with the state of its free lists, and a first
//! batch of one kind alone left those lists in a state that cost a later spawn of that kind 50
//! instructions more than another's.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` runs every bench target with `--bench`: this one is run by hand.
    let (Some(kind), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        return;
    };
    let kind = kind.clone();
    graceful::Builder::new()
        .signals([])
        .flavor(graceful::Flavor::CurrentThread)
        .run(async move {
            let nested = graceful::scope("a").scope("b");
            let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
            for kind in KINDS {
                spawn_kind(kind, WARM_UP, &nested, &tracker, &token).await;
            }
            spawn_kind(&kind, n, &nested, &tracker, &token).await;
        });
}

const KINDS: [&str; 6] = ["tokio", "graceful", "scoped", "service", "tracker", "bound"];

/// Tasks of each kind spawned before the measured run.
const WARM_UP: usize = 1024;

async fn spawn_kind(
    kind: &str,
    n: usize,
    nested: &graceful::Scope,
    tracker: &TaskTracker,
    token: &CancellationToken,
) {
    // One loop per kind, each compiled on its own: in one shared loop, the inlining of one kind's
    // spawn moved another's count by dozens of instructions.
    match kind {
        "tokio" => spawn_all(n, || tokio::spawn(async {})).await,
        "graceful" => spawn_all(n, || graceful::spawn(async {})).await,
        "scoped" => spawn_all(n, || nested.spawn(async {})).await,
        "service" => spawn_all(n, || graceful::spawn_service("s", async {})).await,
        "bound" => spawn_all(n, || bound::spawn(async {})).await,
        // What a tokio user writes by hand for a tracked task that a shutdown cancels, as in
        // `benches/spawn.rs`.
        _ => {
            spawn_all(n, || {
                let token = token.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => None,
                        value = async {} => Some(value),
                    }
                })
            })
            .await
        }
    }
}

/// Spawns `n` tasks 256 at a time with `spawn`, awaiting each batch.
#[inline(never)]
async fn spawn_all<T>(n: usize, spawn: impl Fn() -> tokio::task::JoinHandle<T>) {
    for _ in 0..n / 256 {
        let mut handles = Vec::with_capacity(256);
        for _ in 0..256 {
            handles.push(spawn());
        }
        for handle in handles {
            handle.await.unwrap();
        }
    }
}

/// The least a registry kept outside tokio can do per task and still abort it: one lock to add
/// the task's abort handle to a slab, and one to remove it when the future is dropped. Less than
/// graceful can afford: no start time, location or kind, one global store, and the lock held
/// across tokio's spawn, which a real registry must not do (tokio drops the future inside `spawn`
/// when the runtime is closing, and a `Drop` that spawns or lists tasks would deadlock). tokio
/// offers no other way to abort a task than its handle, so no design outside it goes below this.
mod bound {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use slab::Slab;
    use tokio::task::{AbortHandle, JoinHandle};

    static STORE: Mutex<Slab<AbortHandle>> = Mutex::new(Slab::new());

    struct Tracked<F> {
        future: F,
        key: usize,
    }

    impl<F: Future> Future for Tracked<F> {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            // SAFETY: `future` is never moved out of the pinned wrapper.
            unsafe { self.map_unchecked_mut(|this| &mut this.future) }.poll(cx)
        }
    }

    impl<F> Drop for Tracked<F> {
        fn drop(&mut self) {
            let _ = STORE.lock().unwrap().try_remove(self.key);
        }
    }

    pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut store = STORE.lock().unwrap();
        let key = store.vacant_key();
        let handle = tokio::spawn(Tracked { future, key });
        store.insert(handle.abort_handle());
        handle
    }
}
