//! An HTTP server that replaces itself without refusing a connection or losing a request.
//! `kill -USR2 <pid>` (under systemd, `systemctl reload`) starts the program again; the new
//! process takes over the listening socket and, once ready, the old one stops accepting, finishes
//! what it started, answers the next request on each kept-alive connection with
//! `Connection: close` so its client reconnects to the new one, and exits 0.
//!
//! ```text
//! cargo run --features http --example upgrade_server   # listens on 127.0.0.1:3000
//! curl 127.0.0.1:3000/                      # pid 4242
//! kill -USR2 4242
//! curl 127.0.0.1:3000/                      # pid 4250
//! ```
//!
//! Rebuild between the two `curl`s and the new process runs the new build: the executable is the
//! path resolved when the program started. `examples/systemd/upgrade-server.service` runs it
//! under systemd; `upgrade-server-activated.socket` and its service, with socket activation.

use std::time::Duration;

use axum::routing::get;
use axum::Router;

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
    graceful::http::serve(listener, app).await?;
    println!(
        "pid {pid} answered every request it had ({:?})",
        graceful::reason().unwrap()
    );
    Ok(())
}

async fn slow(pid: u32) -> String {
    tokio::time::sleep(Duration::from_secs(2)).await;
    format!("pid {pid}, after 2s\n")
}
