//! A client of the HTTP benches: requests one after another, each outcome counted as
//! `benches/upgrade.rs` explains.

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::support::HttpFailure;

#[derive(Default)]
pub struct Counts {
    pub answered: AtomicU64,
    pub refused: AtomicU64,
    pub unanswered: AtomicU64,
    pub keep_alive_race: AtomicU64,
    pub other: AtomicU64,
}

impl Counts {
    pub fn row(&self) -> [u64; 5] {
        [
            self.answered.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
            self.unanswered.load(Ordering::SeqCst),
            self.keep_alive_race.load(Ordering::SeqCst),
            self.other.load(Ordering::SeqCst),
        ]
    }
}

/// One request, classified as the counts need it.
enum Outcome {
    /// The response, and whether the server asked to close the connection.
    Answered {
        close: bool,
    },
    /// Nothing came back: the connection closed or reset before a byte of the response.
    Nothing,
    Failed,
}

fn request(stream: &mut BufReader<TcpStream>, path: &str, keep_alive: bool) -> Outcome {
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{connection}\r\n");
    match super::support::http_exchange(stream, &request) {
        Ok((head, _)) if head.starts_with("http/1.1 200") => Outcome::Answered {
            close: head.contains("connection: close"),
        },
        Ok(_) | Err(HttpFailure::Broken) => Outcome::Failed,
        Err(HttpFailure::Nothing) => Outcome::Nothing,
    }
}

/// One client: requests for `path` one after another until `stop`, on one connection as long as
/// the server keeps it (`keep_alive`), or a new connection each.
pub fn client(
    address: String,
    path: &'static str,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut connection: Option<BufReader<TcpStream>> = None;
    let mut reused = false;
    while !stop.load(Ordering::SeqCst) {
        let stream = match &mut connection {
            Some(stream) => stream,
            None => match TcpStream::connect(&address) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(15)))
                        .unwrap();
                    reused = false;
                    connection.insert(BufReader::new(stream))
                }
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    counts.refused.fetch_add(1, Ordering::SeqCst);
                    // A refused connect returns at once: do not spin.
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(_) => {
                    counts.other.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            },
        };
        match request(stream, path, keep_alive) {
            Outcome::Answered { close } => {
                counts.answered.fetch_add(1, Ordering::SeqCst);
                if close || !keep_alive {
                    connection = None;
                } else {
                    reused = true;
                }
            }
            Outcome::Nothing => {
                let counter = if reused {
                    &counts.keep_alive_race
                } else {
                    &counts.unanswered
                };
                counter.fetch_add(1, Ordering::SeqCst);
                connection = None;
            }
            Outcome::Failed => {
                counts.other.fetch_add(1, Ordering::SeqCst);
                connection = None;
            }
        }
    }
}
