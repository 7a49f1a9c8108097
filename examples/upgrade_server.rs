//! An HTTP server that replaces itself without refusing a connection. `kill -USR2 <pid>` (under
//! systemd, `systemctl reload`) starts the program again; the new process takes over the
//! listening socket and, once ready, the old one stops accepting, finishes what it started,
//! answers requests on kept-alive connections with `Connection: close` so their clients
//! reconnect to the new one, and exits 0.
//!
//! ```text
//! cargo run --example upgrade_server        # listens on 127.0.0.1:3000
//! curl 127.0.0.1:3000/                      # pid 4242
//! kill -USR2 4242
//! curl 127.0.0.1:3000/                      # pid 4250
//! ```
//!
//! Rebuild between the two `curl`s and the new process runs the new build: the executable is the
//! path resolved when the program started. `examples/systemd/upgrade-server.service` runs it
//! under systemd; `upgrade-server-activated.socket` and its service, with socket activation.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderValue, Request};
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

/// How long a kept-alive connection may stay idle once the shutdown has started: a client that
/// sends its next request within it is answered, with `Connection: close`; then it is closed.
const IDLE_AFTER_SHUTDOWN: Duration = Duration::from_secs(3);

#[graceful::main(upgrade_signal = "SIGUSR2", grace = "10s")]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    // Inherited from the old process in an upgrade, from systemd under socket activation, or
    // bound fresh.
    let listener = graceful::listen_tcp(address.as_str()).await?;
    let pid = std::process::id();
    let how = if graceful::is_upgrade() {
        "took over from the old process"
    } else {
        "started"
    };
    println!("pid {pid} listening on {} ({how})", listener.local_addr()?);
    let app = Router::new()
        .route("/", get(move || async move { format!("pid {pid}\n") }))
        .route("/slow", get(move || slow(pid)));
    // The old process, if any, now hands over and starts draining.
    graceful::ready();
    loop {
        tokio::select! {
            _ = graceful::shutdown_requested() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                graceful::spawn_service("connection", serve(stream, app.clone()));
            }
        }
    }
    // Connections still queued on the socket are the new process's to accept.
    println!(
        "pid {pid} stopped accepting ({:?}); answering the connections it has",
        graceful::reason().unwrap()
    );
    Ok(())
}

async fn slow(pid: u32) -> String {
    tokio::time::sleep(Duration::from_secs(2)).await;
    format!("pid {pid}, after 2s\n")
}

/// One connection, as long as its client keeps it. From the shutdown on, every response carries
/// `Connection: close` (hyper then closes the connection after it), and a connection idle for
/// [`IDLE_AFTER_SHUTDOWN`] is closed.
async fn serve(stream: tokio::net::TcpStream, app: Router) -> Result<(), hyper::Error> {
    // As `axum::serve` does: a response written in two parts must not wait for the client's ACK.
    let _ = stream.set_nodelay(true);
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = hyper::service::Service::call(&app, request);
        async move {
            let mut response = response.await?;
            if graceful::is_shutting_down() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        done = connection.as_mut() => return done,
        _ = graceful::shutdown_requested() => {}
    }
    tokio::select! {
        done = connection.as_mut() => return done,
        _ = tokio::time::sleep(IDLE_AFTER_SHUTDOWN) => {}
    }
    // Idle connections close now; a request being answered finishes first.
    connection.as_mut().graceful_shutdown();
    connection.await
}
