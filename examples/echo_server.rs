//! aiorun's echo server, ported: each connection is a cancellable task; on Ctrl-C the accept loop
//! stops, open connections are cancelled, and `main` finishes its own clean-up (it is drained).
//!
//! ```text
//! cargo run --example echo_server            # listens on 127.0.0.1:8888
//! cargo run --example echo_client            # in another terminal
//! ```

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[graceful::main(grace = "5s")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8888".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo server listening on {}", listener.local_addr()?);
    loop {
        tokio::select! {
            _ = graceful::shutdown_requested() => break,
            accepted = listener.accept() => {
                let (socket, peer) = accepted?;
                // Cancelled (dropped at its next `.await`, closing the socket) at shutdown.
                graceful::spawn(async move {
                    if let Err(err) = echo(socket).await {
                        eprintln!("{peer}: {err}");
                    }
                });
            }
        }
    }
    // Still running after the signal: `main` is drained, not dropped.
    drop(listener);
    println!("echo server: stopped accepting, goodbye");
    Ok(())
}

async fn echo(socket: TcpStream) -> std::io::Result<()> {
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        writer.write_all(format!("{line}\n").as_bytes()).await?;
    }
    Ok(())
}
