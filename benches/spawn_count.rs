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

#[path = "common/bound.rs"]
mod bound;
#[path = "common/by_hand.rs"]
mod by_hand;
#[path = "common/counted.rs"]
mod counted;

fn main() {
    let Some((kind, n)) = counted::kind_and_count() else {
        return;
    };
    let _ = graceful::Builder::new()
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
        _ => spawn_all(n, || by_hand::spawn(tracker, token)).await,
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
