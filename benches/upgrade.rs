//! Restart without downtime under HTTP load: `examples/upgrade_server` replaced 20 times in a row
//! while client threads send requests, with and without keep-alive; and the same load across 20
//! plain graceful stop-and-starts (SIGTERM, wait for the exit, start again on the same port), the
//! way a service restarts without an upgrade.
//!
//! Every request ends in one of these, counted apart:
//! - answered;
//! - refused: the connection was refused (nobody listening);
//! - unanswered: the connection was accepted and the request sent, and no response came (a
//!   request the server may have started and dropped);
//! - lost to the keep-alive race: on a connection that had answered before, the server closed it
//!   while the request was on its way (the client would retry it; HTTP allows that for idempotent
//!   requests).
//!
//! `cargo bench --bench upgrade` (Unix; about a minute). Not a criterion bench: it counts
//! outcomes, it does not time anything.

#[cfg(unix)]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(unix)]
mod load {
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

    fn request(stream: &mut BufReader<TcpStream>, keep_alive: bool) -> Outcome {
        let connection = if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        let request = format!("GET / HTTP/1.1\r\nHost: bench\r\n{connection}\r\n");
        match super::support::http_exchange(stream, &request) {
            Ok((head, _)) if head.starts_with("http/1.1 200") => Outcome::Answered {
                close: head.contains("connection: close"),
            },
            Ok(_) | Err(HttpFailure::Broken) => Outcome::Failed,
            Err(HttpFailure::Nothing) => Outcome::Nothing,
        }
    }

    /// One client: requests one after another until `stop`, on one connection as long as the
    /// server keeps it (`keep_alive`), or a new connection each.
    pub fn client(address: String, keep_alive: bool, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
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
            match request(stream, keep_alive) {
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
}

#[cfg(unix)]
fn main() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use support::{example, kill, wait_gone, Orphans};

    const ROUNDS: usize = 20;
    const CLIENTS: usize = 8;
    // Between two restarts: long enough for every client to have been answered by the new
    // process several times.
    const BETWEEN: Duration = Duration::from_millis(500);

    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and `cargo test --benches` ask what is here: one bench.
        println!("upgrade: bench");
        return;
    }

    let mut rows = Vec::new();
    for keep_alive in [true, false] {
        for upgrade in [true, false] {
            let mut orphans = Orphans::default();
            let mut first = example("upgrade_server").arg("127.0.0.1:0").start();
            let line = first.wait_for_line("listening on");
            let address = line.split(' ').nth(4).unwrap().to_owned();
            let mut pid = first.pid() as u32;
            let stop = Arc::new(AtomicBool::new(false));
            let counts = Arc::new(load::Counts::default());
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (address, stop, counts) = (address.clone(), stop.clone(), counts.clone());
                    std::thread::spawn(move || load::client(address, keep_alive, stop, counts))
                })
                .collect();
            let started = Instant::now();
            let mut restarts = Vec::new();
            let mut servers = vec![first];
            for _ in 0..ROUNDS {
                std::thread::sleep(BETWEEN);
                if upgrade {
                    kill(pid, libc::SIGUSR2);
                    let line = servers[0].wait_for_line("took over");
                    pid = line.split(' ').nth(1).unwrap().parse().unwrap();
                    orphans.0.push(pid);
                    restarts.push(Instant::now());
                } else {
                    let mut old = servers.pop().unwrap();
                    old.signal(libc::SIGTERM);
                    old.wait_exit();
                    servers.push(old);
                    let mut next = example("upgrade_server").arg(&address).start();
                    next.wait_for_line("listening on");
                    pid = next.pid() as u32;
                    restarts.push(Instant::now());
                    servers.push(next);
                }
            }
            std::thread::sleep(BETWEEN);
            stop.store(true, Ordering::SeqCst);
            for client in clients {
                client.join().unwrap();
            }
            let elapsed = started.elapsed();
            kill(pid, libc::SIGTERM);
            wait_gone(pid);
            for mut server in servers {
                server.wait();
            }
            rows.push((keep_alive, upgrade, counts.row(), elapsed));
        }
    }

    println!(
        "\n{ROUNDS} restarts under {CLIENTS} clients, each sending requests one after another\n"
    );
    println!("| connections | restart | answered | refused | unanswered | lost to the keep-alive race | other errors | run |");
    println!("|---|---|---|---|---|---|---|---|");
    for (keep_alive, upgrade, [answered, refused, unanswered, race, other], elapsed) in rows {
        println!(
            "| {} | {} | {answered} | {refused} | {unanswered} | {race} | {other} | {:.1}s |",
            if keep_alive {
                "kept alive"
            } else {
                "one per request"
            },
            if upgrade {
                "upgrade (SIGUSR2)"
            } else {
                "stop and start (SIGTERM)"
            },
            elapsed.as_secs_f64()
        );
    }
}

#[cfg(not(unix))]
fn main() {
    println!("the upgrade bench needs Unix");
}
