//! Restart without downtime, as users meet it: a server under a stream of new connections is sent
//! its upgrade signal; the new process takes over the listening socket, the old one finishes what
//! it started and exits 0. And the ways an upgrade fails or is refused, with the old process
//! serving on.
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{fixture, fixture_under, kill as signal, runs, wait_gone, Orphans, Running};
use support::{SIGTERM, TIMEOUT};

const SIGUSR2: i32 = libc::SIGUSR2;

/// The pid a fixture line starts with.
fn pid_of(line: &str) -> u32 {
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// `<pid> listening <address> upgrade <bool>`: the address.
fn address_of(line: &str) -> String {
    line.split_whitespace().nth(2).unwrap().to_owned()
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    Ok(stream)
}

/// Sends one request line on `stream` and reads the pid that answered.
fn request(stream: &TcpStream, line: &str) -> Result<u32, String> {
    let mut writer = stream;
    writer
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    answer(stream)
}

fn answer(stream: &TcpStream) -> Result<u32, String> {
    let mut text = String::new();
    BufReader::new(stream)
        .read_line(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    text.trim()
        .parse()
        .map_err(|_| format!("no answer (read {text:?})"))
}

/// One request on a new connection.
fn ask(address: &str) -> Result<u32, String> {
    request(&connect(address)?, "pid")
}

/// Requests on new connections, one after another, from a thread of its own until stopped: what
/// a load balancer sends while the upgrade runs.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<u32>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    fn start(address: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (address, stopping, answered, failed) = (
            address.to_owned(),
            stop.clone(),
            answers.clone(),
            errors.clone(),
        );
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match ask(&address) {
                    Ok(pid) => answered.lock().unwrap().push(pid),
                    Err(err) => failed.lock().unwrap().push(err),
                }
            }
        });
        Load {
            stop,
            answers,
            errors,
            thread: Some(thread),
        }
    }

    /// Waits until `pid` has answered `n` requests.
    fn wait_for(&self, pid: u32, n: usize) {
        let end = Instant::now() + TIMEOUT;
        loop {
            let seen = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .filter(|&&p| p == pid)
                .count();
            if seen >= n {
                return;
            }
            assert!(
                Instant::now() < end,
                "pid {pid} answered {seen} requests in {TIMEOUT:?}; errors: {:?}",
                self.errors.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the load; the answers and the errors.
    fn stop(mut self) -> (Vec<u32>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let answers = std::mem::take(&mut *self.answers.lock().unwrap());
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (answers, errors)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The descriptors a generation had open at start (`<pid> fds 0,1,2,…`).
fn descriptors_of(out: &Running, pid: u32) -> Vec<i32> {
    let prefix = format!("{pid} fds ");
    let stdout = out.stdout_so_far();
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no descriptor line for {pid}:\n{stdout}"));
    line[prefix.len()..]
        .split(',')
        .map(|fd| fd.parse().unwrap())
        .collect()
}

/// Starts the fixture and waits until it serves: the running program, its pid and address.
fn serving(started: support::Fixture) -> (Running, u32, String) {
    let mut program = started.start();
    let pid = program.pid() as u32;
    let address = address_of(&program.wait_for_line(&format!("{pid} listening")));
    program.wait_for_line(&format!("{pid} ready"));
    (program, pid, address)
}

#[test]
fn upgrades_hand_over_without_refusing_a_connection_and_in_flight_requests_end_on_the_old_process()
{
    let mut generations = Orphans::default();
    let (mut first, first_pid, address) = serving(fixture("upgrade"));
    let load = Load::start(&address);
    let mut old = first_pid;
    for _ in 0..3 {
        load.wait_for(old, 10);
        // A request in flight across the hand-over: read by the old process before the signal.
        let in_flight = connect(&address).unwrap();
        (&in_flight).write_all(b"slow 1000\n").unwrap();
        first.wait_for_line(&format!("{old} slow 1000"));
        signal(old, SIGUSR2);

        let new = pid_of(&first.wait_for_line("upgrade true"));
        generations.0.push(new);
        assert_ne!(new, old);
        // The two processes' lines interleave.
        let lines = first.wait_for_lines(&[
            &format!("{new} ready"),
            &format!("{old} draining (Upgraded)"),
            &format!("{old} exits"),
        ]);
        assert_eq!(
            answer(&in_flight),
            Ok(old),
            "answered by the process that read it"
        );
        assert_eq!(lines[2], format!("{old} exits Exit {{ code: 0 }}"));
        if old == first_pid {
            assert_eq!(first.wait_exit().code(), Some(0));
        }
        wait_gone(old);
        // Stdin, stdout, stderr, the listener and the readiness socket: nothing else leaked.
        let fds = descriptors_of(&first, new);
        assert_eq!(fds.len(), 5, "descriptors of pid {new}: {fds:?}");
        assert_eq!(fds[..3], [0, 1, 2]);
        load.wait_for(new, 10);
        old = new;
    }
    let (answers, errors) = load.stop();
    assert_eq!(
        errors,
        Vec::<String>::new(),
        "refused or unanswered requests"
    );
    for pid in [first_pid].iter().chain(&generations.0) {
        assert!(answers.contains(pid), "pid {pid} never answered");
    }
    signal(old, SIGTERM);
    wait_gone(old);
    let out = first.wait();
    // Nothing reported: no work aborted, failed or panicked in any generation. The waiting line
    // is no report: on a loaded machine the last drain can take more than the second after
    // which it appears.
    let reported: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.contains("graceful:") && !line.contains("graceful: waiting for"))
        .collect();
    assert!(reported.is_empty(), "{}", out.stderr);
}

#[test]
fn a_new_process_that_exits_before_it_is_ready_is_reported_and_the_old_one_serves_on() {
    let mut generations = Orphans::default();
    let (mut old, pid, address) = serving(fixture("upgrade").arg("serve").arg("crash"));
    // Twice: a failed upgrade leaves the way open for the next one.
    for _ in 0..2 {
        old.signal(SIGUSR2);
        let crashed = pid_of(&old.wait_for_line("upgrade true"));
        generations.0.push(crashed);
        let failed = old.wait_for_stderr("upgrade failed");
        assert!(
            failed.ends_with(&format!(
                "the new process (pid {crashed}) exited before it was ready (exit status: 3); \
                 this process goes on serving"
            )),
            "{failed}"
        );
        assert_eq!(ask(&address), Ok(pid));
    }
    old.signal(SIGTERM);
    old.wait().assert_killed_by(SIGTERM);
}

#[test]
fn a_new_process_never_ready_is_killed_at_the_upgrade_timeout() {
    let mut generations = Orphans::default();
    let started = fixture("upgrade")
        .arg("serve")
        .arg("hang")
        .env("UPGRADE_TIMEOUT", "1");
    let (mut old, pid, address) = serving(started);
    old.signal(SIGUSR2);
    let hung = pid_of(&old.wait_for_line("hanging"));
    generations.0.push(hung);
    let failed = old.wait_for_stderr("upgrade failed");
    assert!(
        failed.ends_with(&format!(
            "the new process (pid {hung}) was not ready within 1s; killed it; \
             this process goes on serving"
        )),
        "{failed}"
    );
    assert!(!runs(hung), "killed and reaped");
    assert_eq!(ask(&address), Ok(pid));
    old.signal(SIGTERM);
    old.wait().assert_killed_by(SIGTERM);
}

#[test]
fn upgrade_signals_during_an_upgrade_or_a_shutdown_are_refused_and_a_shutdown_kills_the_unready_process(
) {
    let mut generations = Orphans::default();
    let (mut old, pid, address) = serving(fixture("upgrade").arg("serve").arg("hang"));
    old.signal(SIGUSR2);
    let hung = pid_of(&old.wait_for_line("hanging"));
    generations.0.push(hung);
    old.signal(SIGUSR2);
    let refused = old.wait_for_stderr("upgrade refused");
    assert!(
        refused.ends_with("upgrade refused: an upgrade is already running"),
        "{refused}"
    );

    // Keeps the shutdown draining while the upgrade signal comes again.
    let in_flight = connect(&address).unwrap();
    (&in_flight).write_all(b"slow 5000\n").unwrap();
    old.wait_for_line(&format!("{pid} slow 5000"));
    old.signal(SIGTERM);
    let killed = old.wait_for_stderr("upgrade failed");
    assert!(
        killed.ends_with(&format!(
            "the new process (pid {hung}) was killed: a shutdown started before it was ready"
        )),
        "{killed}"
    );
    wait_gone(hung);
    old.signal(SIGUSR2);
    let refused = old.wait_for_stderr("upgrade refused");
    assert!(
        refused.ends_with("upgrade refused: the program is shutting down"),
        "{refused}"
    );
    assert_eq!(answer(&in_flight), Ok(pid));
    old.wait().assert_killed_by(SIGTERM);
}

/// A stand-in for systemd that knows who sent what: the credentials the kernel attaches to each
/// datagram (`SO_PASSCRED`), as systemd reads them.
#[cfg(target_os = "linux")]
struct Manager {
    socket: std::os::unix::net::UnixDatagram,
    _dir: support::TempDir,
    path: std::path::PathBuf,
}

#[cfg(target_os = "linux")]
impl Manager {
    fn new(test: &str) -> Manager {
        use std::os::fd::AsRawFd;
        let dir = support::TempDir::new(test);
        let path = dir.file("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let on: libc::c_int = 1;
        // SAFETY: an option set on our own socket, from a value that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        Manager {
            socket,
            _dir: dir,
            path,
        }
    }

    /// The next message and the pid that sent it.
    fn next(&self) -> (u32, String) {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 512];
        // u64s: aligned for the control headers.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: a plain C struct for which zero bytes are valid.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `header` points into buffers that live across the call, with
        // their lengths.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut header, 0) };
        assert!(n >= 0, "no notify message within {TIMEOUT:?}");
        let mut sender = 0;
        // SAFETY: the control headers the kernel wrote into `control`, walked with libc's macros;
        // the credentials are read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    sender = cred.pid as u32;
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        (
            sender,
            String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
        )
    }
}

#[cfg(target_os = "linux")]
#[test]
fn under_systemd_the_new_process_takes_the_activated_socket_and_the_old_one_falls_silent_after_mainpid(
) {
    use std::os::fd::AsRawFd;

    let mut generations = Orphans::default();
    let manager = Manager::new("upgrade-notify");
    // The socket unit's listener, passed as systemd does.
    let activated = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = activated.local_addr().unwrap().to_string();
    let script = r#"LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web WATCHDOG_PID=$$ exec "$0""#;
    let started = fixture_under("sh", &["-c", script], "upgrade")
        .pass_fds(vec![activated.as_raw_fd()])
        // Claimed by its `FileDescriptorName=`, then handed on under that name.
        .env("NAME", "web")
        // The program's own variable, though it looks like systemd's: the new process keeps it.
        .env("LISTEN_ADDRESS", "kept")
        .env("ADDR", "127.0.0.1:0")
        .env("NOTIFY_SOCKET", manager.path.to_str().unwrap())
        .env("WATCHDOG_USEC", "400000");
    let (mut old, pid, bound) = serving(started);
    assert_eq!(bound, address, "the activated socket, not a fresh one");
    drop(activated);
    assert_eq!(ask(&address), Ok(pid));

    old.signal(SIGUSR2);
    let new = pid_of(&old.wait_for_line("upgrade true"));
    generations.0.push(new);
    // Everything up to the hand-over; the old process's last word is MAINPID.
    let mut from_new = Vec::new();
    loop {
        let (sender, message) = manager.next();
        if sender == new {
            if message != "WATCHDOG=1" {
                from_new.push(message);
            }
        } else if message == format!("MAINPID={new}") {
            assert_eq!(sender, pid);
            break;
        } else {
            assert_eq!(sender, pid, "{message}");
            assert!(
                message == "READY=1" || message == "WATCHDOG=1",
                "before the hand-over the old process sends only READY and pings: {message:?}"
            );
        }
    }
    assert_eq!(old.wait_exit().code(), Some(0));
    assert_eq!(ask(&address), Ok(new));
    assert!(
        old.stdout_so_far()
            .contains(&format!("{new} env LISTEN_ADDRESS=kept\n")),
        "the new process has the program's environment"
    );
    // After MAINPID: the new process's READY and pings (WATCHDOG_PID names the old one), and
    // nothing from the old one, neither STOPPING nor a ping.
    let mut pings = 0;
    while pings < 3 {
        let (sender, message) = manager.next();
        assert_eq!(
            sender, new,
            "after MAINPID the old process said {message:?}"
        );
        if message == "WATCHDOG=1" {
            pings += 1;
        } else {
            from_new.push(message);
        }
    }
    assert_eq!(from_new, ["READY=1"], "the new process's other messages");
    signal(new, SIGTERM);
    let (sender, message) = loop {
        let (sender, message) = manager.next();
        if message != "WATCHDOG=1" {
            break (sender, message);
        }
    };
    assert_eq!(sender, new);
    assert!(message.starts_with("STOPPING=1"), "{message}");
    wait_gone(new);
    old.wait();
}

/// The program as PID 1, the way a container runs it: a PID namespace of its own.
#[cfg(target_os = "linux")]
#[test]
fn an_upgrade_is_refused_under_pid_1() {
    let permitted = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !permitted {
        eprintln!("skipped: `unshare --pid` is not permitted here (it needs CAP_SYS_ADMIN)");
        return;
    }
    let mut wrapper = fixture_under("unshare", &["--pid", "--fork"], "upgrade").start();
    let address = address_of(&wrapper.wait_for_line("1 listening"));
    wrapper.wait_for_line("1 ready");
    // The program as the test sees it: `unshare`'s child.
    let children = format!("/proc/{0}/task/{0}/children", wrapper.pid());
    let pid: u32 = std::fs::read_to_string(children)
        .unwrap()
        .split_whitespace()
        .next()
        .expect("unshare's child")
        .parse()
        .unwrap();
    signal(pid, SIGUSR2);
    let refused = wrapper.wait_for_stderr("upgrade refused");
    assert!(
        refused.ends_with(
            "upgrade refused: the process is PID 1: its exit would end the container and the new process"
        ),
        "{refused}"
    );
    assert_eq!(ask(&address), Ok(1), "still serving");
    signal(pid, SIGTERM);
    // PID 1 ignores a raised SIGTERM: the runtime exits 128 + 15 instead.
    wrapper.wait().assert_code(143);
}

/// A deploy that renames a new build over the program's file: the upgrade runs the new file
/// (the path resolved at start), and listeners asked for by name and by Unix path are handed on.
#[cfg(target_os = "linux")]
#[test]
fn an_upgrade_after_a_deploy_by_rename_runs_the_new_file_with_named_and_unix_listeners() {
    let dir = support::TempDir::new("upgrade-rename");
    let installed = dir.file("app");
    std::fs::copy(support::fixture_path(), &installed).unwrap();
    let socket = dir.file("app.sock");
    let started = support::program(&installed, "app")
        .env("GRACEFUL_FIXTURE", "upgrade")
        .env("NAME", "web")
        .env("UNIX_SOCKET", socket.to_str().unwrap());
    let mut generations = Orphans::default();
    let (mut old, pid, address) = serving(started);
    // The deploy: a new file renamed over the old one, which the running process still executes.
    let staged = dir.file("app.new");
    std::fs::copy(support::fixture_path(), &staged).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    let running = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        running.to_string_lossy().ends_with(" (deleted)"),
        "{running:?}"
    );

    old.signal(SIGUSR2);
    let new = pid_of(&old.wait_for_line("upgrade true"));
    generations.0.push(new);
    old.wait_for_line(&format!("{new} ready"));
    let stdout = old.stdout_so_far();
    assert!(
        stdout.contains(&format!("{new} exe {}\n", installed.display())),
        "the new process runs the renamed file:\n{stdout}"
    );
    // Bound by the old process: binding the path again would have failed.
    assert!(stdout.contains(&format!("{new} unix ")), "{stdout}");
    assert_eq!(old.wait_exit().code(), Some(0));
    assert_eq!(ask(&address), Ok(new));
    // The old process is gone: the Unix socket listens because the new one holds it.
    std::os::unix::net::UnixStream::connect(&socket).unwrap();
    // Descriptors: stdio, the two listeners, the readiness socket.
    assert_eq!(descriptors_of(&old, new).len(), 6);
    signal(new, SIGTERM);
    wait_gone(new);
    old.wait();
}
