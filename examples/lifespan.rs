//! bareASGI's lifespan pattern: state and a background service are created at start-up *inside*
//! the runtime, used while the program runs, and stopped by a shutdown hook once the services
//! that used them have drained. Ends by itself.
//!
//! The trap it avoids: tokio resources (sockets, timers, clients holding either) belong to the
//! runtime that created them. State built before the runtime exists — in a `static` initialised
//! by a throwaway runtime, say — outlives that runtime and fails on first use ("there is no
//! reactor running" / "A Tokio 1.x context was found, but it is being shutdown"). Building it in
//! `main`, after `#[graceful::main]` has started the runtime, ties it to the runtime that uses it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stands in for a database pool: opened at start-up, refreshed in the background, closed last.
struct Pool {
    queries: AtomicU64,
    refreshes: AtomicU64,
}

impl Pool {
    async fn open() -> Arc<Pool> {
        tokio::time::sleep(Duration::from_millis(20)).await; // connect
        println!("lifespan: pool opened");
        Arc::new(Pool {
            queries: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        })
    }

    async fn query(&self) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    async fn close(&self) {
        tokio::time::sleep(Duration::from_millis(20)).await; // say goodbye to the server
        println!(
            "lifespan: pool closed after {} queries and {} refreshes",
            self.queries.load(Ordering::Relaxed),
            self.refreshes.load(Ordering::Relaxed)
        );
    }
}

#[graceful::main(grace = "5s")]
async fn main() {
    // Start-up.
    let pool = Pool::open().await;
    let refresher = pool.clone();
    graceful::spawn_service("pool-refresher", async move {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = graceful::shutdown_requested() => break,
                _ = every.tick() => { refresher.refreshes.fetch_add(1, Ordering::Relaxed); }
            }
        }
        println!("lifespan: refresher stopped");
    });
    // Hooks run after every service has drained, so the pool outlives all its users.
    let closing = pool.clone();
    graceful::on_shutdown(async move { closing.close().await });

    // The program's work: a worker that queries until told to stop.
    let worker = pool.clone();
    graceful::spawn_service("worker", async move {
        while !graceful::is_shutting_down() {
            worker.query().await;
        }
        println!("lifespan: worker finished its last query");
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("lifespan: work done, shutting down");
}
