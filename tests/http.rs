//! `graceful::http::serve` as users meet it: an axum app in a child process, real sockets, a
//! SIGTERM while requests are in flight, on kept-alive HTTP/1 connections, on connections that
//! have sent nothing yet, and over HTTP/2.
#![cfg(all(unix, feature = "http"))]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{fixture, Running, SIGTERM, SLACK, TIMEOUT};

/// The server's grace (the fixture's), which a drain must not wait for.
const GRACE: Duration = Duration::from_secs(20);

/// The fixture's `idle_close`.
const IDLE_CLOSE: Duration = Duration::from_millis(500);

/// Starts the server fixture with `args`; the address it listens on.
fn server(args: &[&str]) -> (Running, String) {
    server_with(fixture("http_server"), args)
}

fn server_with(mut started: support::Fixture, args: &[&str]) -> (Running, String) {
    for arg in args {
        started = started.arg(arg);
    }
    let mut server = started.start();
    let line = server.wait_for_line("listening on");
    let address = line.rsplit(' ').next().unwrap().to_owned();
    (server, address)
}

fn connect(address: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(address).expect("connect to the server");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    BufReader::new(stream)
}

fn send(connection: &mut BufReader<TcpStream>, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    connection
        .get_mut()
        .write_all(request.as_bytes())
        .expect("send a request");
}

/// One HTTP/1 response: status, headers (names lowercased), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn closes(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, value)| name == "connection" && value.eq_ignore_ascii_case("close"))
    }
}

fn answer(connection: &mut BufReader<TcpStream>) -> Result<Answer, String> {
    let mut line = String::new();
    match connection.read_line(&mut line) {
        Ok(0) => return Err("the connection closed before a response".into()),
        Ok(_) => {}
        Err(err) => return Err(format!("read: {err}")),
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a status line: {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        connection
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or("a malformed header")?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .ok_or("no content-length")?;
    let mut body = vec![0; length];
    connection
        .read_exact(&mut body)
        .map_err(|e| format!("read the body: {e}"))?;
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Whether the server closes the connection: a read that ends (0 bytes, or reset) in time.
fn closed_by_server(connection: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match connection.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// `/watch` on a connection of its own: from then on, `http turn` is printed at the server's turn.
fn watch(address: &str) {
    let mut connection = connect(address);
    send(&mut connection, "/watch");
    assert_eq!(answer(&mut connection).unwrap().body, "watching");
}

/// The server run as `how` (the fixture's first argument) drains at SIGTERM and its `serve`
/// returns, long before the grace is up.
fn drains_at_once(how: &str) {
    let (mut server, address) = server(&[how]);
    watch(&address);
    server.signal(SIGTERM);
    server.wait_for_line("http turn in http");
    let out = server.wait();
    out.assert_killed_by(SIGTERM)
        .assert_stdout_has("serve returned")
        .assert_exited_within(GRACE / 4);
}

#[test]
fn serve_awaited_in_main_drains_at_once_and_returns() {
    drains_at_once("main");
}

#[test]
fn serve_as_a_root_service_drains_at_once() {
    drains_at_once("service");
}

/// Kept-alive HTTP/1 connections with a request in flight, one with nothing sent yet, one idle
/// after a first answer: each in-flight request is answered, each request sent after the turn
/// began is answered too, every answer from then on says `Connection: close`, and the connection
/// that never sends anything is closed after `idle_close`.
#[test]
fn a_drain_answers_every_http1_request_and_closes_each_connection_after_it() {
    let (mut server, address) = server(&["main"]);
    // Connected first, so accepted before the requests below are answered.
    let mut fresh = connect(&address);
    let mut silent = connect(&address);
    let mut kept = connect(&address);
    send(&mut kept, "/");
    let first = answer(&mut kept).unwrap();
    assert!(
        !first.closes(),
        "before the shutdown connections are kept alive"
    );
    let mut slow: Vec<_> = (0..3).map(|_| connect(&address)).collect();
    for connection in &mut slow {
        send(connection, "/slow");
    }
    for _ in 0..3 {
        server.wait_for_line("handling slow");
    }
    watch(&address);

    server.signal(SIGTERM);
    server.wait_for_line("http turn in http");
    // Sent after the turn began, on a kept-alive connection and on one that had sent nothing.
    send(&mut kept, "/");
    send(&mut fresh, "/");
    for (what, connection) in [("kept-alive", &mut kept), ("fresh", &mut fresh)] {
        let late = answer(connection).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((late.status, late.body.as_str()), (200, "ok"), "{what}");
        assert!(
            late.closes(),
            "{what}: no `Connection: close`: {:?}",
            late.headers
        );
        assert!(
            closed_by_server(connection),
            "{what}: left open after the answer"
        );
    }
    for connection in &mut slow {
        let answer = answer(connection).unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "slow done"));
        assert!(
            answer.closes(),
            "an answer after the turn: {:?}",
            answer.headers
        );
        assert!(closed_by_server(connection));
    }
    let waited = Instant::now();
    assert!(
        closed_by_server(&mut silent),
        "the silent connection was not closed"
    );
    assert!(waited.elapsed() < IDLE_CLOSE + SLACK);

    server
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("serve returned")
        .assert_exited_within(GRACE / 4);
}

/// HTTP/2 with prior knowledge (h2c), as a hyper client sends it: the streams in flight at the
/// turn are all answered.
#[test]
fn a_drain_answers_every_http2_stream_in_flight() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (mut server, address) = server(&["main"]);
    // A worker of its own drives the client while this thread waits for the server's lines.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sender, connection) = runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("an HTTP/2 handshake")
    });
    runtime.spawn(connection);
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let mut sender = sender.clone();
            let request = hyper::Request::get(format!("http://{address}/slow"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            runtime.spawn(async move {
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            })
        })
        .collect();
    for _ in 0..4 {
        server.wait_for_line("handling slow");
    }
    watch(&address);
    server.signal(SIGTERM);
    server.wait_for_line("http turn in http");
    for request in requests {
        let (status, body) = runtime
            .block_on(async { tokio::time::timeout(TIMEOUT, request).await })
            .expect("an answer in time")
            .unwrap()
            .expect("an answer");
        assert_eq!((status.as_u16(), &body[..]), (200, &b"slow done"[..]));
    }
    server
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_exited_within(GRACE / 4);
}

/// A client that goes away mid-request is no failure of the server's: nothing on stderr, and
/// under `stop_on_error` the program serves on.
#[test]
fn a_client_that_disconnects_mid_request_is_not_a_failure() {
    let (mut server, address) = server(&["main", "stop_on_error"]);
    let mut gone = connect(&address);
    send(&mut gone, "/slow");
    server.wait_for_line("handling slow");
    drop(gone);
    let mut partial = connect(&address);
    partial
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .unwrap();
    drop(partial);
    // Once both connections have ended (the slow answer found no client), the server serves on.
    let asked = Instant::now();
    loop {
        let mut next = connect(&address);
        send(&mut next, "/connections");
        let live = answer(&mut next).unwrap().body;
        if live == "1" {
            break;
        }
        assert!(asked.elapsed() < TIMEOUT, "connections left: {live}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.signal(SIGTERM);
    let out = server.wait();
    out.assert_killed_by(SIGTERM);
    assert!(
        !out.stderr.contains("failed"),
        "a disconnecting client was reported: {}",
        out.stderr
    );
}

/// The report names one server's connections as one entry, with how many have a request in
/// flight: in the waiting line, and at the abort at the deadline.
#[test]
fn the_report_groups_a_servers_connections() {
    let started = fixture("http_server")
        .env("GRACE_MS", "3000")
        .env("IDLE_CLOSE_MS", "2500");
    let (mut server, address) = server_with(started, &["main"]);
    let mut hanging: Vec<_> = (0..2).map(|_| connect(&address)).collect();
    let _silent = connect(&address);
    for connection in &mut hanging {
        send(connection, "/hang");
    }
    for _ in 0..2 {
        server.wait_for_line("handling hang");
    }
    server.signal(SIGTERM);
    let out = server.wait();
    let source = support::source("http_server");
    let (_, waiting) = out.stderr_line("waiting for");
    assert!(
        waiting.contains(&format!("3 connections in http at {source}:"))
            && waiting.contains(", 2 with a request in flight"),
        "{waiting}"
    );
    let (_, aborted) = out.stderr_line("aborted at the deadline: 2 connections");
    assert!(
        aborted.contains(&format!("2 connections in http at {source}:"))
            && aborted.contains(", 2 with a request in flight"),
        "{aborted}"
    );
    let naming = out.stderr.lines().filter(|l| l.contains("connection"));
    assert_eq!(
        naming.count(),
        2,
        "one line each, no line per connection: {}",
        out.stderr
    );
}

/// A long answer to a client that reads slowly is written out whole, though the server's turn
/// came and `idle_close` passed while hyper was still writing it.
#[test]
fn a_long_answer_to_a_slow_reader_is_not_cut_at_the_idle_close() {
    let (mut server, address) = server(&["main"]);
    let mut big = connect(&address);
    send(&mut big, "/big");
    server.wait_for_line("handling big");
    watch(&address);
    server.signal(SIGTERM);
    server.wait_for_line("http turn in http");
    // The slow reader: nothing read for twice `idle_close` after the turn.
    std::thread::sleep(IDLE_CLOSE * 2);
    let answer = answer(&mut big).expect("the whole answer");
    assert_eq!(answer.body.len(), 16 << 20, "the answer was cut");
    server.wait().assert_killed_by(SIGTERM);
}

#[path = "../benches/common/load.rs"]
mod load;

/// Five restarts without downtime under steady clients, 32 kept alive and 4 opening one
/// connection per request: every request is answered, none refused.
#[test]
fn upgrades_under_steady_clients_lose_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let mut server = fixture("http_upgrade").arg("serve").start();
    let line = server.wait_for_line("listening on");
    let address = line.split(' ').nth(4).unwrap().to_owned();
    let mut pid = server.pid() as u32;
    let mut orphans = support::Orphans::default();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(load::Counts::default());
    let clients: Vec<_> = (0..36)
        .map(|i| {
            let keep_alive = i < 32;
            let (address, stop, counts) = (address.clone(), stop.clone(), counts.clone());
            std::thread::spawn(move || load::client(address, "/work", keep_alive, stop, counts))
        })
        .collect();
    for _ in 0..5 {
        // Each process answers some requests before it is replaced.
        let answered = counts.row()[0];
        let waited = Instant::now();
        while counts.row()[0] < answered + 200 {
            assert!(waited.elapsed() < TIMEOUT, "no answers");
            std::thread::sleep(Duration::from_millis(10));
        }
        support::kill(pid, libc::SIGUSR2);
        let took_over = server.wait_for_line("took over");
        pid = took_over.split(' ').nth(1).unwrap().parse().unwrap();
        orphans.0.push(pid);
    }
    let answered = counts.row()[0];
    let waited = Instant::now();
    while counts.row()[0] < answered + 200 {
        assert!(
            waited.elapsed() < TIMEOUT,
            "the last process answers nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    support::kill(pid, SIGTERM);
    support::wait_gone(pid);
    server.wait();
    let [answered, refused, unanswered, race, other] = counts.row();
    assert!(answered >= 1200, "{answered} answered");
    assert_eq!(
        (refused, unanswered, race, other),
        (0, 0, 0, 0),
        "refused, unanswered, lost to the keep-alive race, other errors"
    );
}
