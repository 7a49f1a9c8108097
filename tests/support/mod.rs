//! The one helper process tests share: start a fixture program, wait for a marker line, send it a
//! real signal, and collect its status, stdout and stderr — every wait bounded, and the child
//! killed if the test fails midway.

#![allow(dead_code, unused_imports)] // Each test file uses part of it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(unix)]
pub use libc::{SIGINT, SIGTERM};

/// Every wait for a child has this bound unless a test says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Slack on exit-time bounds: a loaded 2-core machine can be slow to schedule a process.
pub const SLACK: Duration = Duration::from_secs(2);

/// The programs the tests start, built once per test binary: the fixture program of
/// `tests/fixtures` and the crate's examples, by target name. `cargo test` has released the build
/// lock by the time tests run, so this reuses the compiled dependencies. The paths come from
/// cargo's own report of what it built, not from guessing the target directory's layout.
fn programs() -> &'static HashMap<String, PathBuf> {
    static PROGRAMS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let mut command = cargo_build();
        command.args(["-p", "graceful-main", "--examples"]);
        // The features of this test binary, for the fixtures and examples that need them.
        if cfg!(feature = "http") {
            command.args(["--features", "graceful-main/http,graceful-fixtures/http"]);
        }
        built(command)
    })
}

/// `cargo build` of the fixture program, in this test binary's profile so that it reuses its
/// artifacts, reporting what it built as JSON.
fn cargo_build() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "-q", "--message-format=json"])
        .args(["-p", "graceful-fixtures", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    command
}

/// Runs a `cargo_build` and maps each program it built to its file.
fn built(mut command: Command) -> HashMap<String, PathBuf> {
    let output = command.output().expect("run cargo to build the fixtures");
    assert!(output.status.success(), "building the fixtures failed");
    let report = String::from_utf8(output.stdout).expect("cargo writes UTF-8 JSON");
    let programs: HashMap<String, PathBuf> = report
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|line| {
            let name = json_string_after(line, r#""target":{"#, "name")?;
            let executable = json_string_after(line, "", "executable")?;
            Some((name, PathBuf::from(executable)))
        })
        .collect();
    assert!(
        programs.contains_key("fixture"),
        "cargo built no fixture program:\n{report}"
    );
    programs
}

/// `tests/fixtures/src/fixtures/NAME.rs` from the fixture program built with the `taskdump`
/// feature and `--cfg tokio_unstable`, which tokio's task dump needs. The cfg changes how tokio
/// itself is compiled, so this build has a target directory of its own (`taskdump` beside this
/// test binary's profile directory) and the rest of the suite is untouched.
#[cfg(target_os = "linux")]
pub fn taskdump_fixture(name: &str) -> Fixture {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    let path = PROGRAM.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/<test binary>
        let target = exe.ancestors().nth(3).expect("a test binary under target/");
        let mut command = cargo_build();
        command
            .args(["--features", "graceful-fixtures/taskdump"])
            .env("CARGO_TARGET_DIR", target.join("taskdump"))
            .env(
                "RUSTFLAGS",
                format!(
                    "{} --cfg tokio_unstable",
                    std::env::var("RUSTFLAGS").unwrap_or_default()
                ),
            );
        built(command)
            .remove("fixture")
            .expect("the fixture program")
    });
    program(path, name).env(FIXTURE_VAR, name)
}

/// The string value of `"key":"…"` in one line of cargo's JSON, after `from`. Enough JSON for
/// cargo's messages: no nesting to track, and only `\\` and `\"` to undo in a path.
fn json_string_after(line: &str, from: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(from)? + from.len()..];
    let pattern = format!("\"{key}\":\"");
    let rest = &rest[rest.find(&pattern)? + pattern.len()..];
    let mut out = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
}

/// The fixture program's file, for a test that installs a copy of it.
pub fn fixture_path() -> &'static Path {
    program_path("fixture")
}

/// A built example's or the fixture program's file, by target name.
pub fn program_path(name: &str) -> &'static Path {
    programs()
        .get(name)
        .unwrap_or_else(|| panic!("no program `{name}` was built"))
}

pub struct Fixture {
    command: Command,
    name: String,
    unread: Option<Stream>,
}

/// One of the child's output streams.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One of the crate's examples, as `cargo run --example NAME` would run it.
pub fn example(name: &str) -> Fixture {
    program(program_path(name), name)
}

/// The source file of a fixture, as its reports name it: `#[path]` modules of a generated list
/// carry their absolute path in `Location`s.
pub fn source(name: &str) -> String {
    format!(
        "{}/tests/fixtures/src/fixtures/{name}.rs",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The variable that tells the fixture program which fixture to run.
const FIXTURE_VAR: &str = "GRACEFUL_FIXTURE";

/// `tests/fixtures/src/fixtures/NAME.rs`, started as a program.
pub fn fixture(name: &str) -> Fixture {
    program(program_path("fixture"), name).env(FIXTURE_VAR, name)
}

/// A fixture started through another program (GNU `timeout`, `unshare`): `wrapper ARGS… FIXTURE`.
pub fn fixture_under(wrapper: &str, args: &[&str], name: &str) -> Fixture {
    let mut started = program(wrapper, &format!("{wrapper} {name}")).env(FIXTURE_VAR, name);
    for arg in args {
        started = started.arg(arg);
    }
    started.arg(program_path("fixture"))
}

/// Starts any program with the helper's plumbing (bounded waits, kill on drop).
pub fn program(path: impl AsRef<std::ffi::OsStr>, name: &str) -> Fixture {
    let mut command = Command::new(path);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0");
    Fixture {
        command,
        name: name.to_string(),
        unread: None,
    }
}

impl Fixture {
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Fixture {
        self.command.arg(arg);
        self
    }

    /// Passes `fds` to the child as descriptors 3, 4, … (as systemd's socket activation does).
    /// Only `dup2` and `fcntl` run between `fork` and `exec`.
    #[cfg(unix)]
    #[allow(dead_code)]
    pub fn pass_fds(mut self, fds: Vec<std::os::fd::RawFd>) -> Fixture {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure only calls `fcntl` and `dup2`, which are async-signal-safe, on
        // descriptors this process holds open; it allocates nothing.
        unsafe {
            self.command.pre_exec(move || {
                // First out of the way of the targets, so no source is overwritten early.
                let mut high = [0; 16];
                for (i, &fd) in fds.iter().enumerate() {
                    high[i] = libc::fcntl(fd, libc::F_DUPFD, 100);
                    if high[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, &fd) in high[..fds.len()].iter().enumerate() {
                    if libc::dup2(fd, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Fixture {
        self.command.env(key, value);
        self
    }

    /// Leaves stdin open (a pipe nobody writes to), as a terminal would.
    pub fn stdin_open(mut self) -> Fixture {
        self.command.stdin(Stdio::piped());
        self
    }

    /// Leaves `stream` a pipe that nobody reads: once full, every write into it blocks.
    pub fn unread(mut self, stream: Stream) -> Fixture {
        self.unread = Some(stream);
        self
    }

    pub fn start(mut self) -> Running {
        let mut child = self.command.spawn().expect("start the fixture");
        let (lines_tx, lines) = mpsc::channel();
        // An unread pipe is kept open, not closed: closed, writes would fail instead of blocking.
        let mut unread: Option<Box<dyn Send>> = None;
        match self.unread {
            Some(Stream::Stdout) => {
                unread = Some(Box::new(child.stdout.take().unwrap()));
                child.stdout = None;
            }
            Some(Stream::Stderr) => {
                unread = Some(Box::new(child.stderr.take().unwrap()));
                child.stderr = None;
            }
            None => {}
        }
        let stdout = child.stdout.take();
        let stdout_text = Arc::new(Mutex::new(String::new()));
        let text = stdout_text.clone();
        let stdout_reader = thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                text.lock().unwrap().push_str(&line);
                text.lock().unwrap().push('\n');
                let _ = lines_tx.send(line);
            }
        });
        let stderr = child.stderr.take();
        let (stderr_tx, stderr_live) = mpsc::channel();
        let stderr_reader = thread::spawn(move || {
            let mut lines = Vec::new();
            let Some(stderr) = stderr else { return lines };
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                let _ = stderr_tx.send(line.clone());
                lines.push((Instant::now(), line));
            }
            lines
        });
        Running {
            child: Some(child),
            name: self.name,
            lines,
            stderr_live,
            stdout: stdout_text,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
            started: Instant::now(),
            signalled: None,
            _unread: unread,
        }
    }

    /// Starts the program, waits for `marker`, sends `signal`, and waits for the end.
    #[cfg(unix)]
    pub fn signal_after(self, marker: &str, signal: i32) -> Finished {
        let mut child = self.start();
        child.wait_for_line(marker);
        child.signal(signal);
        child.wait()
    }

    /// Starts the program and waits for it to end by itself.
    pub fn run(self) -> Finished {
        self.start().wait()
    }
}

pub struct Running {
    child: Option<Child>,
    name: String,
    lines: Receiver<String>,
    stderr_live: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stdout_reader: Option<thread::JoinHandle<()>>,
    stderr_reader: Option<thread::JoinHandle<Vec<(Instant, String)>>>,
    started: Instant,
    signalled: Option<Instant>,
    _unread: Option<Box<dyn Send>>,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Everything the program (and whatever shares its stdout) printed so far.
    pub fn stdout_so_far(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until the program prints a line containing `marker`; panics (killing it) on timeout.
    pub fn wait_for_line(&mut self, marker: &str) -> String {
        self.wait_on(marker, false)
    }

    /// Waits until the program has printed a line with each of `markers`, in any order (two
    /// processes sharing the stdout interleave): the lines, in the order of `markers`.
    pub fn wait_for_lines(&mut self, markers: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; markers.len()];
        let end = Instant::now() + TIMEOUT;
        while found.iter().any(Option::is_none) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = (0..markers.len())
                        .find(|&i| found[i].is_none() && line.contains(markers[i]))
                    {
                        found[i] = Some(line);
                    }
                }
                Err(_) => panic!(
                    "{}: no lines with all of {markers:?} within {TIMEOUT:?} (found {found:?})",
                    self.name
                ),
            }
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Like [`wait_for_line`](Self::wait_for_line), but `None` if the program ends first.
    pub fn line_unless_exited(&mut self, marker: &str) -> Option<String> {
        self.unless_exited(marker, false)
    }

    /// The same, on stderr.
    pub fn stderr_unless_exited(&mut self, marker: &str) -> Option<String> {
        self.unless_exited(marker, true)
    }

    fn unless_exited(&mut self, marker: &str, stderr: bool) -> Option<String> {
        let end = Instant::now() + TIMEOUT;
        loop {
            let lines = if stderr {
                &self.stderr_live
            } else {
                &self.lines
            };
            match lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(marker) => return Some(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line with {marker:?} within {TIMEOUT:?}", self.name)
                }
            }
        }
    }

    /// The same, on stderr.
    pub fn wait_for_stderr(&mut self, marker: &str) -> String {
        self.wait_on(marker, true)
    }

    fn wait_on(&mut self, marker: &str, stderr: bool) -> String {
        let end = Instant::now() + TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let lines = if stderr {
                &self.stderr_live
            } else {
                &self.lines
            };
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line with {marker:?} within {TIMEOUT:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let finished = self.wait();
                    panic!(
                        "{}: ended before printing {marker:?}: {finished:?}",
                        finished.name
                    )
                }
            }
        }
    }

    /// Writes `text` to the child's stdin (see [`Fixture::stdin_open`]).
    pub fn write_stdin(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self
            .child
            .as_mut()
            .unwrap()
            .stdin
            .as_mut()
            .expect("stdin_open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a real signal to the child (never to the test process).
    #[cfg(unix)]
    pub fn signal(&mut self, signal: i32) {
        // SAFETY: `kill` has no memory preconditions; the pid is our own child's.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
        self.signalled.get_or_insert_with(Instant::now);
    }

    /// Waits for the exit (bounded by [`TIMEOUT`]) without collecting the output: a process the
    /// child started may still hold its pipes. [`wait`](Self::wait) collects later.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("already waited");
        let end = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{}: still running after {TIMEOUT:?}", self.name);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the exit (bounded by [`TIMEOUT`]) and collects everything.
    pub fn wait(&mut self) -> Finished {
        let status = self.wait_exit();
        // Reaped already: this only takes the child out, so the guard's `Drop` leaves it be.
        let _ = self.child.take().expect("waited twice").wait();
        let exited = Instant::now();
        let stderr_lines = self.stderr_reader.take().unwrap().join().unwrap();
        self.stdout_reader.take().unwrap().join().unwrap();
        let stdout = self.stdout.lock().unwrap().clone();
        let signalled = self.signalled;
        Finished {
            name: self.name.clone(),
            status,
            stdout,
            stderr: stderr_lines.iter().map(|(_, l)| format!("{l}\n")).collect(),
            stderr_after_signal: stderr_lines
                .into_iter()
                .map(|(at, line)| {
                    (
                        signalled.map_or(Duration::ZERO, |s| at.saturating_duration_since(s)),
                        line,
                    )
                })
                .collect(),
            elapsed: exited - self.started,
            since_signal: self.signalled.map(|at| exited - at),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Each stderr line with when it arrived, counted from the first signal.
    pub stderr_after_signal: Vec<(Duration, String)>,
    /// From start to exit.
    pub elapsed: Duration,
    /// From the first signal sent to exit.
    pub since_signal: Option<Duration>,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that killed the process, if one did.
    #[cfg(unix)]
    pub fn killed_by(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal()
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Finished {
        assert_eq!(self.code(), Some(code), "{self:#?}");
        self
    }

    #[cfg(unix)]
    #[track_caller]
    pub fn assert_killed_by(&self, signal: i32) -> &Finished {
        assert_eq!(self.killed_by(), Some(signal), "{self:#?}");
        self
    }

    /// Asserts the exit came within `bound` (plus [`SLACK`]) of the first signal.
    #[track_caller]
    pub fn assert_exited_within(&self, bound: Duration) -> &Finished {
        let since = self.since_signal.expect("no signal was sent");
        assert!(
            since <= bound + SLACK,
            "exited {since:?} after the signal, bound {bound:?} + {SLACK:?}: {self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Finished {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {self:#?}"
        );
        self
    }

    /// The first stderr line containing `needle`, and how long after the signal it came.
    #[track_caller]
    pub fn stderr_line(&self, needle: &str) -> (Duration, &str) {
        self.stderr_after_signal
            .iter()
            .find(|(_, line)| line.contains(needle))
            .map(|(at, line)| (*at, line.as_str()))
            .unwrap_or_else(|| panic!("no stderr line with {needle:?}: {self:#?}"))
    }

    #[track_caller]
    pub fn assert_stdout_has(&self, needle: &str) -> &Finished {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}: {self:#?}"
        );
        self
    }
}

/// A file path in a fresh temporary directory, removed with the directory when dropped.
/// Processes a test's program started that are not the test's children (the new process of an
/// upgrade outlives the old one): killed when the test ends, whatever its outcome.
#[cfg(unix)]
#[derive(Default)]
pub struct Orphans(pub Vec<u32>);

#[cfg(unix)]
impl Drop for Orphans {
    fn drop(&mut self) {
        for &pid in &self.0 {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to `pid`, a process the test started (never the test process).
#[cfg(unix)]
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: `kill` has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Whether `pid` still runs: not gone, and not a zombie nobody has reaped yet.
#[cfg(unix)]
pub fn runs(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        // No procfs (macOS): ask the kernel.
        // SAFETY: signal 0 only checks that the process exists.
        Err(_) if !Path::new("/proc/self").exists() => unsafe {
            libc::kill(pid as libc::pid_t, 0) == 0
        },
        Err(_) => false,
    }
}

/// Waits (bounded by [`TIMEOUT`]) until `pid` has ended.
#[cfg(unix)]
pub fn wait_gone(pid: u32) {
    let end = Instant::now() + TIMEOUT;
    while runs(pid) {
        assert!(
            Instant::now() < end,
            "pid {pid} still runs after {TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// How one HTTP/1.1 exchange on a connection went wrong.
#[derive(Debug, PartialEq, Eq)]
pub enum HttpFailure {
    /// Nothing came back: the request could not be sent, or the connection closed or was reset
    /// before a byte of the response.
    Nothing,
    /// The response broke off, or was not one.
    Broken,
}

/// Sends `request` on `stream` in one write (in pieces, Nagle's algorithm would hold the rest
/// for the server's ACK) and reads the response: its head, lowercased, and its body.
pub fn http_exchange(
    stream: &mut BufReader<std::net::TcpStream>,
    request: &str,
) -> Result<(String, String), HttpFailure> {
    use std::io::{Read, Write};
    if stream.get_mut().write_all(request.as_bytes()).is_err() {
        return Err(HttpFailure::Nothing);
    }
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line) {
            Ok(0) if head.is_empty() => return Err(HttpFailure::Nothing),
            Err(err) if head.is_empty() && err.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(HttpFailure::Nothing)
            }
            Ok(0) | Err(_) => return Err(HttpFailure::Broken),
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push_str(&line.to_ascii_lowercase()),
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .ok_or(HttpFailure::Broken)?;
    let mut body = vec![0; length];
    stream
        .read_exact(&mut body)
        .map_err(|_| HttpFailure::Broken)?;
    let body = String::from_utf8(body).map_err(|_| HttpFailure::Broken)?;
    Ok((head, body))
}

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("graceful-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
