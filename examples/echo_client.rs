//! aiorun's echo client, ported: sends a few lines to `echo_server`, prints the echoes, and ends.
//!
//! ```text
//! cargo run --example echo_client [ADDR]     # default 127.0.0.1:8888
//! ```

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[graceful::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8888".into());
    let socket = TcpStream::connect(&addr).await?;
    let (reader, mut writer) = socket.into_split();
    let mut echoes = BufReader::new(reader).lines();
    for message in ["hello", "graceful", "world"] {
        writer.write_all(format!("{message}\n").as_bytes()).await?;
        let echo = echoes.next_line().await?.unwrap_or_default();
        println!("sent {message:?}, got {echo:?}");
    }
    Ok(())
}
