//! The systemd units and the Kubernetes manifest under `examples/` start the programs they name
//! and work as their comments say: each unit's `ExecStart` program (an example, by file name) is
//! run with a stand-in notify socket, on a free port, with its `.socket` passed as systemd would
//! pass it; a `Type=notify` unit must send `READY=1`. The manifest's command must name an example
//! that serves its probes' paths on their port. Every program they name serves HTTP: the tests
//! run with the `http` feature.
#![cfg(all(unix, feature = "http"))]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{program, program_path, TempDir, SIGTERM, TIMEOUT};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A unit file's `Key=Value` lines (the last of each key wins; comments skipped).
fn unit(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// The example an absolute program path names (`/usr/local/bin/axum_server` → `axum_server`).
fn example_of(program: &str) -> &str {
    let name = program.rsplit('/').next().unwrap();
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("examples/{name}.rs"))
            .exists(),
        "{program} names no example"
    );
    name
}

/// `ExecStart`'s arguments with every socket address replaced by `address`.
fn arguments(exec: &str, address: &str) -> (String, Vec<String>) {
    let mut words = exec.split_whitespace();
    let program = words.next().expect("ExecStart names a program").to_string();
    let args = words
        .map(|word| {
            if word.parse::<std::net::SocketAddr>().is_ok() {
                address.to_string()
            } else {
                word.to_string()
            }
        })
        .collect();
    (program, args)
}

/// `GET path` on one connection, and the whole response (bounded by [`TIMEOUT`]).
fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|err| panic!("nothing listens on {address}: {err}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// Waits for a datagram on the stand-in notify socket that carries `READY=1`.
fn wait_for_ready(notify: &UnixDatagram) -> Vec<String> {
    let limit = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    while Instant::now() < limit {
        if let Ok(n) = notify.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).to_string();
            let ready = message.lines().any(|line| line == "READY=1");
            seen.push(message);
            if ready {
                return seen;
            }
        }
    }
    panic!("no READY=1 within {TIMEOUT:?}; the unit's program sent {seen:?}");
}

#[test]
fn every_unit_starts_its_program_and_a_notify_unit_becomes_ready() {
    let dir = examples_dir().join("systemd");
    let mut services: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "service"))
        .collect();
    services.sort();
    assert!(!services.is_empty());
    for service in services {
        let name = service.file_name().unwrap().to_string_lossy().to_string();
        let settings = unit(&service);
        let temp = TempDir::new(&format!("unit-{}", name.replace('.', "-")));
        let notify_path = temp.file("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = free.local_addr().unwrap().to_string();
        let (program_name, args) = arguments(&settings["ExecStart"], &address);
        let example = example_of(&program_name);
        let socket = settings
            .get("Requires")
            .and_then(|r| r.split_whitespace().find(|u| u.ends_with(".socket")));
        let mut started = match socket {
            // Socket activation: the listening socket as descriptor 3, and `LISTEN_PID` set to
            // the program's own pid by `exec` from the shell.
            Some(socket) => {
                let socket_unit = unit(&dir.join(socket));
                let listen = socket_unit["ListenStream"].parse::<std::net::SocketAddr>();
                assert!(listen.is_ok(), "{socket}: ListenStream is an address");
                assert_eq!(socket_unit.get("Accept").map(String::as_str), Some("no"));
                let mut command = program("/bin/sh", &name)
                    .arg("-c")
                    .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
                    .arg(program_path(example))
                    .env("LISTEN_FDS", "1");
                if let Some(names) = socket_unit.get("FileDescriptorName") {
                    command = command.env("LISTEN_FDNAMES", names);
                }
                for arg in &args {
                    command = command.arg(arg);
                }
                command.pass_fds(vec![free.as_raw_fd()])
            }
            None => {
                drop(free);
                let mut command = program(program_path(example), &name);
                for arg in &args {
                    command = command.arg(arg);
                }
                command
            }
        }
        .env("NOTIFY_SOCKET", notify_path.to_str().unwrap())
        .start();
        if settings.get("Type").map(String::as_str) == Some("notify") {
            wait_for_ready(&notify);
        }
        // It serves where the unit says: the address given (or passed) answers.
        let response = get(&address, "/");
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
        started.signal(SIGTERM);
        started.wait().assert_killed_by(SIGTERM);
    }
}

/// A value of `key: value` in the manifest, the first after `from`.
fn yaml_value<'a>(yaml: &'a str, from: &str, key: &str) -> &'a str {
    let rest = &yaml[yaml.find(from).unwrap_or_else(|| panic!("no {from}"))..];
    let at = rest
        .find(&format!("{key}:"))
        .unwrap_or_else(|| panic!("no {key}"));
    let line = rest[at + key.len() + 1..].lines().next().unwrap();
    line.split('#').next().unwrap().trim()
}

#[test]
fn the_kubernetes_manifest_runs_an_example_that_serves_its_probes() {
    let yaml = std::fs::read_to_string(examples_dir().join("kubernetes.yaml")).unwrap();
    let command = yaml_value(&yaml, "containers:", "command");
    let words: Vec<&str> = command
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|w| w.trim().trim_matches('"'))
        .collect();
    let example = example_of(words[0]);
    let served: std::net::SocketAddr = words[1].parse().expect("the command gives an address");
    let container_port: u16 = yaml_value(&yaml, "ports:", "containerPort")
        .parse()
        .unwrap();
    assert_eq!(served.port(), container_port);
    let probe_path = yaml_value(&yaml, "readinessProbe:", "path");
    let probe_port: u16 = yaml_value(&yaml, "readinessProbe:", "port")
        .parse()
        .unwrap();
    assert_eq!(probe_port, served.port(), "the probe asks another port");

    let mut server = program(program_path(example), example)
        .arg("127.0.0.1:0")
        .start();
    let line = server.wait_for_line("listening on ");
    let address = line.rsplit(' ').next().unwrap().to_string();
    let response = get(&address, probe_path);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.signal(SIGTERM);
    server.wait().assert_killed_by(SIGTERM);
}
