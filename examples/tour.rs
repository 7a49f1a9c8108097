//! A tour of the shutdown: one of each kind of tracked work, then the program sends itself
//! SIGTERM and the report tells what happened to each. Ends by itself in about 1.5 s.
//!
//! ```text
//! cargo run --example tour
//! ```

use std::time::Duration;

// `signal_exit_code = 0`: after the SIGTERM it sends itself, the tour exits 0 so `cargo run` stays
// quiet. Without it the process dies by SIGTERM (status 143), as a shell and systemd expect.
#[graceful::main(grace = "3s", signal_exit_code = 0)]
async fn main() {
    // The report is a set of `tracing` events under the target `graceful`; with no subscriber,
    // only warnings and errors are written (to stderr), so a clean shutdown is silent.
    tracing_subscriber::fmt().with_target(true).init();

    // A service is drained: it sees the shutdown and finishes its own way.
    graceful::spawn_service("ticker", async {
        let mut ticks = 0;
        loop {
            tokio::select! {
                _ = graceful::shutdown_requested() => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => ticks += 1,
            }
        }
        println!("ticker: saw the shutdown after {ticks} ticks, flushing");
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!("ticker: flushed");
    });

    // Plain tasks are cancelled: dropped at their next `.await`, their `Drop`s run.
    for id in 0..3 {
        let guard = Announce(id);
        graceful::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
    }

    // Protected work is waited for, even though the task awaiting it is cancelled.
    graceful::spawn(async {
        let saved = graceful::shutdown_waits_for(async {
            graceful::shutdown_requested().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            println!("protected write: saved");
        });
        saved.await;
    });

    // A blocking job stops when its flag is raised.
    graceful::spawn_blocking("indexer", |stop| {
        let mut pages = 0;
        while !stop.wait_timeout(Duration::from_millis(50)) {
            pages += 1;
        }
        println!("indexer: stopped after {pages} pages");
    });

    // Hooks run after the drain, last registered first.
    graceful::on_shutdown(async { println!("hook: closing the database pool") });
    graceful::on_shutdown(async { println!("hook: deregistering from service discovery") });

    println!("tour: running {} tracked tasks:", graceful::tasks().len());
    for task in graceful::tasks() {
        println!("  {task}");
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("tour: sending myself SIGTERM");
    send_sigterm_to_self();

    graceful::shutdown_requested().await;
    println!(
        "main: shutdown requested ({:?}), returning",
        graceful::reason().unwrap()
    );
}

struct Announce(u32);

impl Drop for Announce {
    fn drop(&mut self) {
        println!("task {}: cancelled", self.0);
    }
}

#[cfg(unix)]
fn send_sigterm_to_self() {
    // SAFETY: kill(2) on our own pid; the runtime's signal thread handles it.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
}

#[cfg(not(unix))]
fn send_sigterm_to_self() {
    graceful::shutdown();
}
