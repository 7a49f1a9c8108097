//! Scopes: an HTTP front, workers it feeds, and a database driver they write through, stopping in
//! that order; and a supervised queue consumer that fails twice and recovers.
//!
//! `cargo run --example scopes` — it runs for about a second, then shuts itself down, and the
//! output shows each scope taking its turn:
//!
//! ```text
//! consumer: connecting (attempt 1)
//! graceful: service "consumer" in queue at examples/scopes.rs:81:11 failed ("broker not ready"); restart 1 of 5 in 60s, in 100ms
//! consumer: connecting (attempt 2)
//! graceful: service "consumer" in queue at examples/scopes.rs:81:11 failed ("broker not ready"); restart 2 of 5 in 60s, in 154ms
//! consumer: connecting (attempt 3)
//! consumer: connected (attempt 3)
//! http: stop accepting, finish 2 requests
//! http: drained
//! workers: flushing 5 queued writes
//! workers: drained
//! db: last write committed (5 in all), closing the connection
//! db: driver stopped
//! hook: all scopes done; closing the pool
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

#[graceful::main(grace = "5s")]
async fn main() {
    // The driver's scope stops last: everything above depends on it.
    let db = graceful::scope("db");
    let (writes, mut queue) = mpsc::unbounded_channel::<String>();
    db.spawn_service("driver", async move {
        // Ends when the last writer is gone, which the order below guarantees is after the
        // workers drained: no write is lost.
        let mut committed = 0;
        while let Some(_write) = queue.recv().await {
            committed += 1;
        }
        println!("db: last write committed ({committed} in all), closing the connection");
        println!("db: driver stopped");
    });

    let workers = graceful::scope("workers").depends_on(&db);
    let (jobs, mut inbox) = mpsc::unbounded_channel::<u32>();
    workers.spawn_service("writer", async move {
        let mut pending = Vec::new();
        loop {
            tokio::select! {
                job = inbox.recv() => match job {
                    Some(job) => pending.push(job),
                    None => break,
                },
                _ = graceful::shutdown_requested() => break,
            }
        }
        println!("workers: flushing {} queued writes", pending.len());
        for job in pending {
            writes
                .send(format!("job {job}"))
                .expect("the driver outlives the workers");
        }
        println!("workers: drained");
    });

    let http = graceful::scope("http").depends_on(&workers);
    http.spawn_service("server", async move {
        for request in 0..5 {
            jobs.send(request).expect("the workers outlive the server");
        }
        graceful::shutdown_requested().await;
        println!("http: stop accepting, finish 2 requests");
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!("http: drained");
    });

    // A consumer whose broker is not up at first: the supervisor restarts it with backoff.
    let queue = graceful::scope("queue");
    let attempts = Arc::new(AtomicU32::new(0));
    queue.supervise("consumer", graceful::Restart::on_failure(), move || {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            println!("consumer: connecting (attempt {attempt})");
            if attempt < 3 {
                return Err("broker not ready");
            }
            println!("consumer: connected (attempt {attempt})");
            graceful::shutdown_requested().await;
            Ok(())
        }
    });

    graceful::on_shutdown(async {
        println!("hook: all scopes done; closing the pool");
    });

    // Long enough for the consumer's two restarts (100 ms, then up to 200 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    graceful::shutdown();
}
