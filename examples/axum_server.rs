//! A real HTTP server: on SIGTERM it stops accepting (new connections are refused), the requests
//! in flight finish, a kept-alive client's next request is answered with `Connection: close`, and
//! then the process exits.
//!
//! ```text
//! cargo run --features http --example axum_server      # listens on 127.0.0.1:3000
//! curl 127.0.0.1:3000/slow & sleep 0.5; kill -TERM <pid>   # the slow request still gets its 200
//! ```

use std::time::Duration;

use axum::routing::get;
use axum::Router;

#[graceful::main(grace = "10s")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow))
        .route("/ready", get(ready));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("axum server listening on {}", listener.local_addr()?);
    // Start-up is done: under systemd (`examples/systemd/axum-server.service`, `Type=notify`)
    // this sends READY=1; elsewhere it does nothing.
    graceful::ready();
    // The server takes its turn first in the shutdown and returns once every connection is done.
    graceful::http::serve(listener, app).await?;
    println!("axum server: every request answered");
    Ok(())
}

/// The readiness probe of `examples/kubernetes.yaml`: failing from the first moment of the
/// shutdown (all of `drain_delay` included), so the load balancer stops sending new requests.
async fn ready() -> axum::http::StatusCode {
    if graceful::is_shutting_down() {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    }
}

async fn slow() -> &'static str {
    println!("slow request started");
    tokio::time::sleep(Duration::from_secs(2)).await;
    "slow response, complete\n"
}
