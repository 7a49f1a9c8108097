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
#[path = "common/load.rs"]
mod load;

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
                    std::thread::spawn(move || load::client(address, "/", keep_alive, stop, counts))
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
