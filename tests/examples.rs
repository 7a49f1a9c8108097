//! Every example, run as a user runs it.

mod support;

#[cfg(feature = "http")]
use std::io::{Read, Write};
#[cfg(feature = "http")]
use std::net::TcpStream;
use std::time::Duration;
#[cfg(feature = "http")]
use std::time::Instant;

#[cfg(feature = "http")]
use support::SIGTERM;
use support::{example, SIGINT, SLACK};

/// The line of `stdout` holding `needle`, by index, to compare the order of events.
fn line_of(stdout: &str, needle: &str) -> usize {
    stdout
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{stdout}"))
}

/// `... listening on 127.0.0.1:PORT` → the address.
fn address(line: &str) -> String {
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn tour_runs_to_completion_and_tells_the_story() {
    let out = example("tour").run();
    out.assert_code(0);
    for line in [
        "task 0: cancelled",
        "ticker: flushed",
        "protected write: saved",
        "indexer: stopped after",
        "hook: deregistering from service discovery\nhook: closing the database pool",
    ] {
        out.assert_stdout_has(line);
    }
    out.assert_stdout_has("shutdown (SIGTERM) finished in");
}

#[test]
fn lifespan_closes_the_pool_after_its_users_drained() {
    let out = example("lifespan").run();
    out.assert_code(0);
    let at = |needle: &str| line_of(&out.stdout, needle);
    assert!(at("pool opened") < at("work done"));
    assert!(at("refresher stopped") < at("pool closed"));
    assert!(at("worker finished its last query") < at("pool closed"));
}

#[test]
fn scopes_stop_in_dependency_order_and_the_consumer_recovers() {
    let out = example("scopes").run();
    out.assert_code(0)
        .assert_stdout_has("consumer: connected (attempt 3)")
        .assert_stdout_has("db: last write committed (5 in all)")
        .assert_stderr_has("failed (\"broker not ready\"); restart 2 of 5 in 60s, in ");
    // The output the example's docs show names the consumer's real location.
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scopes.rs"),
    )
    .unwrap();
    let documented = source
        .lines()
        .find_map(|line| line.strip_prefix("//! graceful: service \"consumer\" in queue at "))
        .and_then(|rest| rest.split(' ').next())
        .expect("the docs show the consumer's failure line");
    out.assert_stderr_has(&format!("in queue at {documented} failed"));
    let at = |needle: &str| line_of(&out.stdout, needle);
    assert!(at("http: drained") < at("workers: flushing"));
    assert!(at("workers: drained") < at("db: last write committed"));
    assert!(at("db: driver stopped") < at("hook: all scopes done"));
}

#[test]
fn blocking_example_abandons_the_uncooperative_job_without_a_hang() {
    let out = example("blocking").run();
    // An abandoned job makes the shutdown unclean: status 1, though `main` returned.
    out.assert_code(1)
        .assert_stdout_has("indexer stopped after")
        .assert_stdout_has("checksum stopped at")
        .assert_stderr_has(
            "abandoned at the deadline (still running): blocking job \"legacy-call\"",
        );
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
    // 0.4 s of work, then the 1 s grace.
    assert!(
        out.elapsed < Duration::from_millis(1400) + SLACK,
        "{out:#?}"
    );
}

#[test]
fn echo_client_talks_to_echo_server_which_stops_on_sigint() {
    let mut server = example("echo_server").arg("127.0.0.1:0").start();
    let addr = address(&server.wait_for_line("listening on"));
    let client = example("echo_client").arg(&addr).run();
    client
        .assert_code(0)
        .assert_stdout_has("sent \"hello\", got \"hello\"")
        .assert_stdout_has("sent \"world\", got \"world\"");
    server.signal(SIGINT);
    server
        .wait()
        .assert_killed_by(SIGINT)
        .assert_exited_within(Duration::ZERO)
        .assert_stdout_has("stopped accepting, goodbye");
}

#[cfg(feature = "http")]
#[test]
fn axum_server_finishes_requests_in_flight_and_refuses_new_connections() {
    let mut server = example("axum_server").arg("127.0.0.1:0").start();
    let addr = address(&server.wait_for_line("listening on"));

    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(support::TIMEOUT)).unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    server.wait_for_line("slow request started");
    server.signal(SIGTERM);

    // The listener closes as the shutdown starts; poll (bounded) until connecting is refused.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(&addr) {
            Err(err) => {
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < end, "still accepting 5 s after SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    let mut response = String::new();
    slow.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.ends_with("slow response, complete\n"),
        "{response}"
    );

    server
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("every request answered");
}

/// One HTTP/1.1 request on `stream`, kept alive: the response's head (lowercased) and body.
#[cfg(all(unix, feature = "http"))]
fn get(stream: &mut std::io::BufReader<TcpStream>, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    support::http_exchange(stream, &request).expect("a whole response")
}

#[cfg(all(unix, feature = "http"))]
#[test]
fn upgrade_server_hands_over_on_sigusr2_and_tells_kept_alive_clients_to_reconnect() {
    use std::io::BufReader;

    let connect = |addr: &str| {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(support::TIMEOUT)).unwrap();
        BufReader::new(stream)
    };
    let mut server = example("upgrade_server").arg("127.0.0.1:0").start();
    let old = server.pid();
    let addr = address(
        server
            .wait_for_line("listening on")
            .trim_end_matches(" (started)"),
    );
    // Two kept-alive connections the old process accepted: one with a request in flight across
    // the hand-over, one idle.
    let (mut busy, mut idle) = (connect(&addr), connect(&addr));
    assert_eq!(get(&mut busy, "/").1, format!("pid {old}\n"));
    assert_eq!(get(&mut idle, "/").1, format!("pid {old}\n"));
    write!(busy.get_mut(), "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();

    server.signal(libc::SIGUSR2);
    let took_over = server.wait_for_line("took over");
    let new: i32 = took_over.split(' ').nth(1).unwrap().parse().unwrap();
    let _new_process = support::Orphans(vec![new as u32]);
    assert_ne!(new, old);

    // The idle connection's requests are answered by the old process until its server's turn,
    // whose first answer asks the client to reconnect; then the connection is closed.
    let asked = Instant::now();
    loop {
        let (head, body) = get(&mut idle, "/");
        assert_eq!(body, format!("pid {old}\n"));
        if head.contains("connection: close") {
            break;
        }
        assert!(
            asked.elapsed() < support::TIMEOUT,
            "never asked to reconnect"
        );
    }
    let mut rest = String::new();
    assert_eq!(
        idle.read_to_string(&mut rest).unwrap(),
        0,
        "closed after it"
    );
    // The request in flight is answered where it started; new connections go to the new process.
    let mut slow = String::new();
    busy.read_to_string(&mut slow).unwrap();
    assert!(slow.ends_with(&format!("pid {old}, after 2s\n")), "{slow}");
    assert_eq!(get(&mut connect(&addr), "/").1, format!("pid {new}\n"));
    assert_eq!(
        server.wait_exit().code(),
        Some(0),
        "the old process exits 0"
    );

    support::kill(new as u32, SIGTERM);
    support::wait_gone(new as u32);
    server.wait();
}

/// A WebSocket that is open at the shutdown gets a close frame, 1001 (going away), from the
/// server's turn, and the process exits well within its grace.
#[cfg(all(unix, feature = "http"))]
#[test]
fn websocket_sockets_get_a_going_away_close_frame_at_the_shutdown() {
    use std::io::{BufRead, BufReader};

    let mut server = example("websocket").arg("127.0.0.1:0").start();
    let addr = address(&server.wait_for_line("listening on"));
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(support::TIMEOUT)).unwrap();
    let mut socket = BufReader::new(stream);
    socket
        .get_mut()
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let mut status = String::new();
    socket.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut header = String::new();
        socket.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
    }
    // A masked text frame "hi", echoed back unmasked.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend(mask);
    frame.extend(b"hi".iter().zip(mask).map(|(b, m)| b ^ m));
    socket.get_mut().write_all(&frame).unwrap();
    let mut echo = [0u8; 4];
    socket.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);
    server.wait_for_line("socket open");

    server.signal(SIGTERM);
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    socket.read_exact(&mut payload).unwrap();
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    server
        .wait()
        .assert_killed_by(SIGTERM)
        .assert_stdout_has("socket closed: going away")
        .assert_stdout_has("every socket closed")
        .assert_exited_within(Duration::from_secs(5));
}
