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
//! argument picks the spawn: `tokio`, `graceful`, `service`, or `scoped` (into a scope two levels
//! down); all run on the same `current_thread` graceful runtime.

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
            // One loop per kind, each compiled on its own: in one shared loop, the inlining of
            // one kind's spawn moved another's count by dozens of instructions.
            match kind.as_str() {
                "tokio" => spawn_all(n, || tokio::spawn(async {})).await,
                "graceful" => spawn_all(n, || graceful::spawn(async {})).await,
                "scoped" => spawn_all(n, || nested.spawn(async {})).await,
                _ => spawn_all(n, || graceful::spawn_service("s", async {})).await,
            }
        });
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
