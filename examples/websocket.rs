//! A WebSocket echo server whose sockets end cleanly at the shutdown: each gets a close frame
//! (1001, going away) within the grace instead of a dropped connection.
//!
//! ```text
//! cargo run --features http --example websocket        # listens on 127.0.0.1:3000/echo
//! ```
//!
//! axum runs the upgraded socket's callback on a plain `tokio::spawn`, outside any scope: nothing
//! would tell it that the server is stopping, and nothing would wait for it. So the handler,
//! which runs in the server's scope, spawns the socket's work there as a service, and the
//! callback only hands it the socket: the service hears the server's turn and is drained with
//! the connections.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

#[graceful::main(grace = "10s")]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = graceful::listen_tcp(address.as_str()).await?;
    println!("websocket echo listening on {}", listener.local_addr()?);
    let app = Router::new().route("/echo", get(upgrade));
    graceful::http::serve(listener, app).await?;
    println!("every socket closed");
    Ok(())
}

async fn upgrade(upgrade: WebSocketUpgrade) -> Response {
    // Spawned now, from the handler, into the server's scope: the scope cannot finish between the
    // switch of protocols and the socket's service starting. The socket follows once upgraded.
    let (handed, socket) = oneshot::channel();
    graceful::spawn_service("websocket", async move {
        if let Ok(socket) = socket.await {
            echo(socket).await;
        }
    });
    upgrade.on_upgrade(move |socket| async move {
        let _ = handed.send(socket);
    })
}

/// Echoes text until the client leaves or the server's turn comes, then says goodbye.
async fn echo(mut socket: WebSocket) {
    println!("socket open");
    loop {
        tokio::select! {
            _ = graceful::shutdown_requested() => {
                let goodbye = CloseFrame {
                    code: 1001,
                    reason: "server going away".into(),
                };
                let _ = socket.send(Message::Close(Some(goodbye))).await;
                println!("socket closed: going away");
                return;
            }
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
