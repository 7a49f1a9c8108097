//! Listeners from systemd's socket activation: a test binds sockets and passes them to a child
//! as systemd does (descriptors from 3, `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
#![cfg(unix)]

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use support::{fixture_under, SIGTERM};

#[test]
fn passed_sockets_are_claimed_by_name_and_address_and_the_rest_closed_at_ready() {
    let web = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    // Connected, not listening: what an `Accept=yes` unit passes.
    let conn = TcpStream::connect(api.local_addr().unwrap()).unwrap();
    let (web_at, api_at) = (web.local_addr().unwrap(), api.local_addr().unwrap());
    // `$$` is the shell's pid, which `exec` keeps: LISTEN_PID names the fixture.
    let script = r#"LISTEN_PID=$$ LISTEN_FDS=4 LISTEN_FDNAMES=web:api:conn:spare exec "$0" "$1""#;
    let fds = vec![
        web.as_raw_fd(),
        api.as_raw_fd(),
        conn.as_raw_fd(),
        spare.as_raw_fd(),
    ];
    let mut child = fixture_under("sh", &["-c", script], "listeners")
        .arg(api_at.to_string())
        .pass_fds(fds)
        .start();
    assert_eq!(
        child.wait_for_line("web "),
        format!("web {web_at}"),
        "web by name"
    );
    assert_eq!(
        child.wait_for_line("api "),
        format!("api {api_at}"),
        "api by address"
    );
    let refused = child.wait_for_line("conn ");
    assert!(
        refused.contains("conn refused") && refused.contains("not listening"),
        "{refused}"
    );
    assert_eq!(child.wait_for_line("close-on-exec"), "close-on-exec true");
    assert_eq!(
        child.wait_for_line("spare open before"),
        "spare open before ready: true"
    );
    assert_eq!(
        child.wait_for_line("spare open after"),
        "spare open after ready: false"
    );
    child.wait_for_line("ready");
    // The child answers on the socket this test bound: nothing was bound fresh.
    drop(web);
    let mut answer = String::new();
    TcpStream::connect(web_at)
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert_eq!(answer, "web\n");
    child.signal(SIGTERM);
    child.wait().assert_killed_by(SIGTERM);
}
