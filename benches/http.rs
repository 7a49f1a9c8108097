//! `graceful::http::serve` against `axum::serve(..).with_graceful_shutdown(..)`, the same axum
//! app in the same run (`tests/fixtures/src/fixtures/http_upgrade.rs`, handlers of 10 to 100 ms):
//!
//! - 20 restarts without downtime (SIGUSR2, one a second) under `wrk -c64` (kept alive), and under
//!   8 clients opening one connection per request: the requests that failed;
//! - a SIGTERM drain under 64 kept-alive clients and under the 8 one-per-request clients: the
//!   requests that failed, with the connections refused and the fresh connections reset before a
//!   byte of their answer (the kernel's backlog, once the listener is closed) counted apart;
//! - latency: `wrk`'s 99th percentile during the upgrades, and over the same time without;
//! - throughput with no shutdown: `wrk -c64` on an empty handler, three runs of each, interleaved.
//!
//! `cargo bench --bench http --features http` (Unix, needs `wrk`; about four minutes). Not a
//! criterion bench: it counts outcomes and reads `wrk`'s figures.

#[cfg(unix)]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(unix)]
#[path = "common/load.rs"]
mod load;

#[cfg(unix)]
mod bench {
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use super::load;
    use super::support::{fixture, kill, wait_gone, Orphans, Running};

    pub const ROUNDS: u32 = 20;
    /// Between two upgrades.
    pub const BETWEEN: Duration = Duration::from_secs(1);
    pub const KINDS: [&str; 2] = ["serve", "axum"];

    /// A server of `kind`: the process, its address and pid.
    pub fn start(kind: &str) -> (Running, String, u32) {
        let mut server = fixture("http_upgrade").arg(kind).start();
        let line = server.wait_for_line("listening on");
        let address = line.split(' ').nth(4).unwrap().to_owned();
        let pid = server.pid() as u32;
        (server, address, pid)
    }

    /// `ROUNDS` upgrades, `BETWEEN` apart; the last process's pid. Every process is killed when
    /// `orphans` drops.
    pub fn upgrades(server: &mut Running, mut pid: u32, orphans: &mut Orphans) -> u32 {
        for _ in 0..ROUNDS {
            thread::sleep(BETWEEN);
            kill(pid, libc::SIGUSR2);
            let line = server.wait_for_line("took over");
            pid = line.split(' ').nth(1).unwrap().parse().unwrap();
            orphans.0.push(pid);
        }
        pid
    }

    pub fn stop(server: Running, pid: u32) {
        kill(pid, libc::SIGTERM);
        wait_gone(pid);
        let mut server = server;
        server.wait();
    }

    /// What `wrk` says of one run.
    #[derive(Debug, Default)]
    pub struct Wrk {
        pub requests: u64,
        /// Socket errors (connect, read, write, timeout) and answers other than 2xx/3xx.
        pub failed: u64,
        pub connect_errors: u64,
        pub p99_ms: f64,
        pub per_second: f64,
    }

    /// `wrk -t2 -c64 -d<seconds>s --latency` on `url`, started now; its figures once it ends.
    pub fn wrk(url: &str, seconds: u64) -> thread::JoinHandle<Wrk> {
        let url = url.to_owned();
        thread::spawn(move || {
            let out = Command::new("wrk")
                .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", &url])
                .output()
                .expect("run wrk (apt install wrk)");
            parse(&String::from_utf8_lossy(&out.stdout))
        })
    }

    fn parse(text: &str) -> Wrk {
        let mut wrk = Wrk::default();
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("99%") {
                wrk.p99_ms = millis(words[1]);
            } else if line.contains("requests in") {
                wrk.requests = words[0].parse().unwrap_or(0);
            } else if let Some(errors) = line.strip_prefix("Socket errors:") {
                for part in errors.split(',') {
                    let mut kv = part.split_whitespace();
                    let (what, n) = (kv.next().unwrap_or(""), kv.next().unwrap_or("0"));
                    let n: u64 = n.parse().unwrap_or(0);
                    wrk.failed += n;
                    if what == "connect" {
                        wrk.connect_errors += n;
                    }
                }
            } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
                wrk.failed += n.trim().parse::<u64>().unwrap_or(0);
            } else if let Some(n) = line.strip_prefix("Requests/sec:") {
                wrk.per_second = n.trim().parse().unwrap_or(0.0);
            }
        }
        wrk
    }

    fn millis(value: &str) -> f64 {
        let (number, scale) = if let Some(n) = value.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = value.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = value.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (value, 1.0)
        };
        number.parse::<f64>().unwrap_or(f64::NAN) * scale
    }

    /// `threads` clients of `load::client` on `path` until `stop`.
    pub fn clients(
        address: &str,
        threads: usize,
        keep_alive: bool,
    ) -> (
        Arc<AtomicBool>,
        Arc<load::Counts>,
        Vec<thread::JoinHandle<()>>,
    ) {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(load::Counts::default());
        let handles = (0..threads)
            .map(|_| {
                let (address, stop, counts) = (address.to_owned(), stop.clone(), counts.clone());
                thread::spawn(move || load::client(address, "/work", keep_alive, stop, counts))
            })
            .collect();
        (stop, counts, handles)
    }

    pub fn join(stop: Arc<AtomicBool>, handles: Vec<thread::JoinHandle<()>>) {
        stop.store(true, Ordering::SeqCst);
        for handle in handles {
            handle.join().unwrap();
        }
    }
}

#[cfg(unix)]
fn main() {
    use std::time::Duration;

    use bench::*;

    if std::env::args().any(|a| a == "--list") {
        println!("http: bench");
        return;
    }
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("the http bench needs wrk (apt install wrk); skipped");
        return;
    }
    let run = (ROUNDS * BETWEEN.as_secs() as u32) as u64 + 3;
    let mut lines = Vec::new();

    // 20 upgrades under wrk -c64, and wrk over the same time without them.
    for kind in KINDS {
        let mut orphans = support::Orphans::default();
        let (mut server, address, pid) = start(kind);
        let load = wrk(&format!("http://{address}/work"), run);
        let pid = upgrades(&mut server, pid, &mut orphans);
        let during = load.join().unwrap();
        let quiet = wrk(&format!("http://{address}/work"), run).join().unwrap();
        stop(server, pid);
        lines.push(format!(
            "| {kind} | 20 upgrades, wrk -c64 (kept alive) | {} | **{}** | p99 {:.1} ms (without upgrades {:.1} ms: {:.2}×) |",
            during.requests,
            during.failed,
            during.p99_ms,
            quiet.p99_ms,
            during.p99_ms / quiet.p99_ms
        ));
    }

    // 20 upgrades under 8 clients opening one connection per request.
    for kind in KINDS {
        let mut orphans = support::Orphans::default();
        let (mut server, address, pid) = start(kind);
        let (stop_clients, counts, handles) = clients(&address, 8, false);
        let pid = upgrades(&mut server, pid, &mut orphans);
        std::thread::sleep(BETWEEN);
        join(stop_clients, handles);
        stop(server, pid);
        let [answered, refused, unanswered, race, other] = counts.row();
        lines.push(format!(
            "| {kind} | 20 upgrades, 8 clients, one connection per request | {} | **{}** | {refused} refused |",
            answered + unanswered + race + other,
            unanswered + race + other
        ));
    }

    // A SIGTERM drain under each load.
    for (threads, keep_alive, load) in [
        (64, true, "SIGTERM, 64 clients kept alive"),
        (8, false, "SIGTERM, 8 clients, one connection per request"),
    ] {
        for kind in KINDS {
            let (mut server, address, _) = start(kind);
            let (stop_clients, counts, handles) = clients(&address, threads, keep_alive);
            std::thread::sleep(Duration::from_secs(2));
            server.signal(libc::SIGTERM);
            server.wait();
            join(stop_clients, handles);
            let [answered, refused, unanswered, race, other] = counts.row();
            // After the listener closed, a fresh connection still in the kernel's backlog is
            // reset before any byte: counted apart, as a refusal is.
            lines.push(format!(
                "| {kind} | {load} | {} | **{}** | {refused} refused, {unanswered} reset in the backlog |",
                answered + race + other,
                race + other
            ));
        }
    }

    // Throughput with no shutdown.
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, kind) in KINDS.iter().enumerate() {
            let (server, address, pid) = start(kind);
            rates[i].push(
                wrk(&format!("http://{address}/"), 5)
                    .join()
                    .unwrap()
                    .per_second,
            );
            stop(server, pid);
        }
    }
    for rate in &mut rates {
        rate.sort_by(f64::total_cmp);
    }
    let (serve, axum) = (rates[0][1], rates[1][1]);

    println!("\n| server | load | requests | failed | also |");
    println!("|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!(
        "\nthroughput, wrk -c64 on an empty handler, median of 3: serve {serve:.0}/s, axum::serve {axum:.0}/s: {:.3}× (runs: {:?} / {:?})",
        serve / axum,
        rates[0],
        rates[1]
    );
}

#[cfg(not(unix))]
fn main() {
    println!("the http bench needs Unix");
}
