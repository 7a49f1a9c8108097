//! The report: `tracing` events under the target `graceful`, and plain `graceful: ` lines on
//! stderr for warnings and errors when no global subscriber is set, so a stuck task is never
//! silent.
//!
//! Writing can block (a full pipe nobody reads, a stalled logger), so the threads that must never
//! block — the signal thread and the watchdog — hand their lines to a thread of the report's own
//! ([`Deferred`]), and a forced exit's last line is written only if it can be written at once
//! ([`last_words`]).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::SecondSignal;
use crate::signal::Signal;
use crate::task::{TaskInfo, TaskKind};
use crate::taskdump::{Chains, Missed, Pending};

use entries::{entries, Entry};
pub(crate) use entries::{Busy, Servers};

mod entries;
pub(crate) mod summary;
mod value;

pub use value::{Failure, Report};

fn to_stderr() -> bool {
    !tracing::dispatcher::has_been_set()
}

/// Writes one line to stderr in a single call, so lines from several threads do not interleave.
pub(crate) fn stderr_line(message: fmt::Arguments<'_>) {
    let line = format!("graceful: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A line for the report's thread.
enum Line {
    /// A warning: a `tracing` event, or a plain stderr line without a subscriber.
    Warn {
        phase: &'static str,
        message: String,
    },
    /// Progress: a `tracing` info event; nothing without a subscriber. (Only an upgrade's, which
    /// is Unix-only, so far.)
    #[cfg_attr(not(unix), allow(dead_code))]
    Info {
        phase: &'static str,
        message: String,
    },
    /// Text for stderr as it is (the dump table).
    Raw(String),
    /// A line that names stuck work, written once a task dump has said where it waits (or has
    /// not in time, which a line of its own says first).
    AfterDump {
        dump: Pending,
        line: Box<dyn FnOnce(Option<Chains>) -> Line + Send>,
    },
}

impl Line {
    fn write(self) {
        match self {
            Line::Warn { phase, message } => {
                if to_stderr() {
                    stderr_line(format_args!("{message}"));
                } else {
                    tracing::warn!(target: "graceful", phase, "{message}");
                }
            }
            Line::Info { phase, message } => {
                tracing::info!(target: "graceful", phase, "{message}");
            }
            Line::Raw(text) => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
            Line::AfterDump { dump, line } => {
                let chains = dump.wait().map_err(no_chains).ok();
                line(chains).write();
            }
        }
    }
}

/// A thread of the report's own, started on first use, that writes what threads which must not
/// block hand it. If it is stuck on a full pipe, lines queue behind it and nobody else waits.
#[derive(Default)]
pub(crate) struct Deferred {
    sender: Mutex<Option<mpsc::Sender<Line>>>,
}

impl Deferred {
    fn send(&self, line: Line) {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if sender.is_none() {
            let (tx, rx) = mpsc::channel::<Line>();
            // It ends when the runtime's state, which holds the sender, is dropped.
            let started = std::thread::Builder::new()
                .name("graceful-report".into())
                .spawn(move || rx.into_iter().for_each(Line::write));
            if started.is_err() {
                // No thread: the line is lost rather than written where it could block.
                return;
            }
            *sender = Some(tx);
        }
        if let Some(tx) = sender.as_ref() {
            let _ = tx.send(line);
        }
    }
}

/// The last line of a forced exit: written to stderr only if one `write(2)` can take it at once,
/// and without std's lock, which a thread stuck writing may hold. With a subscriber set too: the
/// process ends now, and a subscriber may block.
pub(crate) fn last_words(message: &str) {
    let line = format!("graceful: {message}\n");
    write_now(line.as_bytes());
}

#[cfg(unix)]
fn write_now(bytes: &[u8]) {
    // A pipe that polls writable takes up to `PIPE_BUF` bytes without blocking.
    let len = bytes.len().min(libc::PIPE_BUF);
    let mut pfd = libc::pollfd {
        fd: libc::STDERR_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and a buffer valid for `len` bytes.
    unsafe {
        if libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & libc::POLLOUT != 0 {
            libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), len);
        }
    }
}

#[cfg(not(unix))]
fn write_now(bytes: &[u8]) {
    let _ = std::io::stderr().write_all(bytes);
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// `1.2s`, `340ms`, `2m05s`: short enough for one line.
pub(crate) struct Age(pub(crate) Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_secs(1) {
            write!(f, "{}ms", d.as_millis())
        } else if d < Duration::from_secs(60) {
            write!(f, "{:.1}s", d.as_secs_f64())
        } else {
            write!(f, "{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
        }
    }
}

pub(crate) fn phase(phase: &'static str, since: Instant, counts: &[(&'static str, usize)]) {
    if !tracing::enabled!(target: "graceful", tracing::Level::INFO) {
        return;
    }
    let elapsed_ms = millis(since.elapsed());
    let mut detail = String::new();
    for (what, n) in counts {
        let _ = write!(detail, ", {n} {what}");
    }
    tracing::info!(target: "graceful", phase, elapsed_ms, "{phase} done in {elapsed_ms}ms{detail}");
}

/// A task dump that did not give its chains in time; the report goes on without them.
pub(crate) fn no_chains(missed: Missed) {
    let message = match missed {
        Missed::NotDumped(bound) => format!(
            "could not take a task dump within {}: a thread of the runtime is blocked",
            Age(bound)
        ),
        Missed::Blocked(poll) => format!(
            "took no task dump: a worker thread has been in one poll for {}, and a dump would \
             stop the other workers to wait for it",
            Age(poll)
        ),
        Missed::NotResolved(bound) => format!(
            "took a task dump but could not read its frames within {}",
            Age(bound)
        ),
    };
    if to_stderr() {
        stderr_line(format_args!("{message}"));
    } else {
        tracing::warn!(target: "graceful", phase = "dump", "{message}");
    }
}

/// An item's await chain, one frame per line under it, indented by `indent`: empty without one.
fn chain_lines(item: &TaskInfo, indent: &str) -> String {
    let mut out = String::new();
    for line in item.chain.iter().flatten() {
        let _ = write!(out, "\n{indent}{line}");
    }
    out
}

fn warn_about(item: &TaskInfo, what: &str) {
    let chain = chain_lines(item, "    ");
    if to_stderr() {
        stderr_line(format_args!("{what} {item} (age {}){chain}", Age(item.age)));
    } else {
        tracing::warn!(
            target: "graceful",
            {
                task.name = %item.name,
                task.kind = ?item.kind,
                task.location = %item.location,
                task.age_ms = millis(item.age),
            },
            "{what} {item}{chain}",
        );
    }
}

/// Past this many, stragglers of one kind of report are summed up in one line: a report of
/// 100,000 lines hides what it is meant to show.
const ITEMS_NAMED: usize = 50;

fn warn_about_all(items: &[TaskInfo], what: &str, servers: Option<&Busy>) {
    let entries = entries(items, servers);
    for entry in entries.iter().take(ITEMS_NAMED) {
        match entry {
            Entry::Item(item) => warn_about(item, what),
            Entry::Connections { first, count, .. } => {
                if to_stderr() {
                    stderr_line(format_args!("{what} {entry}"));
                } else {
                    tracing::warn!(
                        target: "graceful",
                        {
                            task.name = %first.name,
                            task.location = %first.location,
                            connections = count,
                        },
                        "{what} {entry}",
                    );
                }
            }
        }
    }
    if entries.len() > ITEMS_NAMED {
        let rest = entries.len() - ITEMS_NAMED;
        if to_stderr() {
            stderr_line(format_args!("{what} and {rest} more"));
        } else {
            tracing::warn!(target: "graceful", more = rest, "{what} and {rest} more");
        }
    }
}

/// What the abort at a deadline cut; `busy` is the servers' counts from before it.
pub(crate) fn aborted(busy: &Busy, items: &[TaskInfo]) {
    warn_about_all(items, "aborted at the deadline:", Some(busy));
}

pub(crate) fn abandoned(items: &[TaskInfo]) {
    warn_about_all(items, "abandoned at the deadline (still running):", None);
}

pub(crate) fn panicked(item: &TaskInfo) {
    if to_stderr() {
        stderr_line(format_args!("{item} panicked"));
    } else {
        tracing::error!(
            target: "graceful",
            { task.name = %item.name, task.kind = ?item.kind, task.location = %item.location },
            "{item} panicked",
        );
    }
}

pub(crate) fn service_failed(item: &TaskInfo, error: &str) {
    if to_stderr() {
        stderr_line(format_args!("{item} failed: {error}"));
    } else {
        tracing::error!(
            target: "graceful",
            { task.name = %item.name, task.kind = ?item.kind, task.location = %item.location, error },
            "{item} failed: {error}",
        );
    }
}

pub(crate) fn hook_skipped(hook: &TaskInfo) {
    if to_stderr() {
        stderr_line(format_args!("{hook} not run: the deadline passed"));
    } else {
        tracing::warn!(
            target: "graceful",
            { task.location = %hook.location },
            "{hook} not run: the deadline passed"
        );
    }
}

/// A supervised service's incarnation ended (`outcome`), and what its supervisor does about it.
pub(crate) fn supervised(item: &TaskInfo, outcome: &str, action: &str) {
    if to_stderr() {
        stderr_line(format_args!("{item} {outcome}; {action}"));
    } else {
        tracing::error!(
            target: "graceful",
            { task.name = %item.name, task.location = %item.location, restarts = item.restarts },
            "{item} {outcome}; {action}",
        );
    }
}

/// `scope.abort()`: what it aborted.
pub(crate) fn scope_aborted(busy: &Busy, path: &str, items: &[TaskInfo]) {
    let message = format!("scope `{path}` aborted: {}", describe(items, Some(busy)));
    if to_stderr() {
        stderr_line(format_args!("{message}"));
    } else {
        tracing::warn!(target: "graceful", phase = "abort", "{message}");
    }
}

/// An upgrade that failed, was refused or was abandoned: the process serves on, and says why.
#[cfg(unix)]
pub(crate) fn upgrade_warning(message: String) {
    upgrade_line(message).write();
}

fn upgrade_line(message: String) -> Line {
    Line::Warn {
        phase: "upgrade",
        message,
    }
}

/// What is still running, main first, services next, tasks last: the order a reader cares about.
pub(crate) fn running(mut items: Vec<TaskInfo>) -> Vec<TaskInfo> {
    items.sort_by_key(|t| {
        let rank = match t.kind {
            TaskKind::Service if t.is_main() => 0,
            TaskKind::Service => 1,
            TaskKind::Protected => 2,
            TaskKind::Hook => 3,
            TaskKind::Blocking => 4,
            TaskKind::Cancellable => 5,
        };
        (rank, std::cmp::Reverse(t.age))
    });
    items
}

/// How many entries a one-line description names.
const NAMED: usize = 4;

/// `2 tasks (service "flusher" at src/main.rs:42:5, main)`, at most a few named, one server's
/// connections as one.
pub(crate) fn describe(items: &[TaskInfo], servers: Option<&Busy>) -> String {
    let mut out = format!(
        "{} {}",
        items.len(),
        if items.len() == 1 { "task" } else { "tasks" }
    );
    let entries = entries(items, servers);
    if !entries.is_empty() {
        out.push_str(" (");
        for (i, entry) in entries.iter().take(NAMED).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{entry}");
        }
        if entries.len() > NAMED {
            let _ = write!(out, ", and {} more", entries.len() - NAMED);
        }
        out.push(')');
    }
    out
}

/// How to force the exit, in the words of the signal that would do it; nothing where nothing can.
///
/// A repeat of the first signal within a second is merged into it. Once a signal has arrived,
/// one more forces: "press Ctrl-C again", "send SIGTERM again". When none has (`main` returned,
/// an upgrade handed over), the first captured signal must come twice, a second apart; "press
/// Ctrl-C" only where a person at a terminal can, not to a daemon's log.
///
/// `first` is the signal that started the shutdown, if one did; `captured` the first signal the
/// program captures.
pub(crate) fn how_to_force(
    second_signal: SecondSignal,
    first: Option<Signal>,
    captured: Option<Signal>,
) -> String {
    if second_signal == SecondSignal::Ignore {
        return String::new();
    }
    let Some(signal) = first.or(captured) else {
        return String::new();
    };
    let ctrl_c = signal == Signal::SIGINT || signal == Signal::CTRL_C;
    if first.is_some() {
        if ctrl_c {
            "; press Ctrl-C again to force".to_string()
        } else {
            format!("; send {signal} again to force")
        }
    } else if ctrl_c && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        "; press Ctrl-C twice, a second apart, to force".to_string()
    } else {
        format!("; send {signal} twice, a second apart, to force")
    }
}

/// The waiting line, for the watchdog one second into a slow shutdown and every five after:
/// what is `running` (asked only when the line is written), the time left, and `how_to_force`.
///
/// `dump` is asked only when the line is written, for what it names; with one, the line waits for
/// it and shows under it where each task it names waits.
pub(crate) fn waiting(
    reporter: &Reporter,
    deadline: Instant,
    running: impl FnOnce() -> Vec<TaskInfo>,
    dump: impl FnOnce(&[TaskInfo]) -> Option<Pending>,
    how_to_force: &str,
) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(500) {
        // The abort at the deadline is about to name everything itself.
        return;
    }
    let items = running();
    let what = if items.is_empty() {
        "the runtime to shut down (untracked blocking work)".to_string()
    } else {
        describe(&items, Some(&reporter.servers.busy()))
    };
    let message = format!("waiting for {what} — {}{how_to_force}", Left(left));
    let line = match dump(&items) {
        None => Line::Warn {
            phase: "waiting",
            message,
        },
        Some(dump) => Line::AfterDump {
            dump,
            line: Box::new(move |chains| {
                let mut items = items;
                let mut message = message;
                if let Some(chains) = chains {
                    chains.fill(&mut items);
                    for entry in entries(&items, None).iter().take(NAMED) {
                        if let Entry::Item(item) = entry {
                            if item.chain.is_some() {
                                let _ = write!(message, "\n  {item}:{}", chain_lines(item, "    "));
                            }
                        }
                    }
                }
                Line::Warn {
                    phase: "waiting",
                    message,
                }
            }),
        },
    };
    reporter.deferred.send(line);
}

/// The time left, in whole seconds rounded up: `up to 24s more`; `no deadline` for a grace no
/// program will outlive.
struct Left(Duration);

impl fmt::Display for Left {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        if self.0 >= FOREVER {
            f.write_str("no deadline")
        } else {
            let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
            write!(f, "up to {secs}s more")
        }
    }
}

/// The `dump_signal` table: every live tracked task, one per line, in the order `running` sorts
/// them (written by the report's thread).
///
/// With a task dump under way, the table waits for it and shows each task's await chain under
/// its row (for the first tasks the report would name).
pub(crate) fn dump(reporter: &Reporter, items: Vec<TaskInfo>, dump: Option<Pending>) {
    let line = match dump {
        None => Line::Raw(table(&items)),
        Some(dump) => Line::AfterDump {
            dump,
            line: Box::new(move |chains| {
                let mut items = items;
                if let Some(chains) = chains {
                    chains.fill(&mut items);
                }
                Line::Raw(table(&items))
            }),
        },
    };
    reporter.deferred.send(line);
}

fn table(items: &[TaskInfo]) -> String {
    let mut out = format!("graceful: {} live tracked tasks\n", items.len());
    let _ = writeln!(
        out,
        "  {:<17} {:<24} {:<16} {:<40} {:>8}",
        "KIND", "NAME", "SCOPE", "LOCATION", "AGE"
    );
    let mut chained = 0;
    for item in items {
        let kind = if item.is_main() {
            "main"
        } else {
            item.kind.column()
        };
        let _ = writeln!(
            out,
            "  {:<17} {:<24} {:<16} {:<40} {:>8}",
            kind,
            if item.name.is_empty() {
                "-"
            } else {
                &item.name
            },
            item.scope.as_deref().unwrap_or("-"),
            item.location.to_string(),
            Age(item.age).to_string()
        );
        if chained < ITEMS_NAMED && item.chain.is_some() {
            chained += 1;
            out.push_str(chain_lines(item, "      ").trim_start_matches('\n'));
            out.push('\n');
        }
    }
    out
}

/// What a list gained after it was `len` long: nothing if it has since been taken (the program's
/// report takes the lists at its very end).
fn tail<T>(list: &[T], len: usize) -> &[T] {
    list.get(len..).unwrap_or(&[])
}

/// How long each list of a [`Log`] was at some moment.
#[derive(Clone, Copy)]
pub(crate) struct LogMark {
    failed: usize,
    panicked: usize,
    not_run: usize,
}

/// Failures, panics and hooks not run as they happen during the run, for the report.
#[derive(Default)]
pub(crate) struct Log {
    failed: Mutex<Vec<Failure>>,
    panicked: Mutex<Vec<TaskInfo>>,
    not_run: Mutex<Vec<TaskInfo>>,
}

impl Log {
    pub(crate) fn failed(&self, task: &TaskInfo, error: &str) {
        let failure = Failure {
            task: task.clone(),
            error: error.to_string(),
        };
        lock(&self.failed).push(failure);
    }

    pub(crate) fn panicked(&self, task: &TaskInfo) {
        lock(&self.panicked).push(task.clone());
    }

    /// A scope's hook the deadline left no time for.
    pub(crate) fn not_run(&self, hook: &TaskInfo) {
        lock(&self.not_run).push(hook.clone());
    }

    /// Where the log is now: a partial shutdown's report covers what is logged after it.
    pub(crate) fn mark(&self) -> LogMark {
        LogMark {
            failed: lock(&self.failed).len(),
            panicked: lock(&self.panicked).len(),
            not_run: lock(&self.not_run).len(),
        }
    }

    /// Copies what concerns the scopes `which` picks, logged `since` a mark, into a scope's
    /// report, leaving it for the program's.
    pub(crate) fn copy_into(
        &self,
        report: &mut Report,
        which: crate::registry::Which<'_>,
        since: LogMark,
    ) {
        let ours = |t: &TaskInfo| which(t.scope.as_ref());
        report.failed.extend(
            tail(&lock(&self.failed), since.failed)
                .iter()
                .filter(|f| ours(&f.task))
                .cloned(),
        );
        report.panicked.extend(
            tail(&lock(&self.panicked), since.panicked)
                .iter()
                .filter(|t| ours(t))
                .cloned(),
        );
        report.hooks_not_run.extend(
            tail(&lock(&self.not_run), since.not_run)
                .iter()
                .filter(|t| ours(t))
                .cloned(),
        );
    }

    #[cfg(test)]
    pub(crate) fn panics(&self) -> usize {
        lock(&self.panicked).len()
    }
}

/// What one runtime's report keeps while it runs: the log of failures and panics, and the
/// report's own thread for lines other threads must not write.
#[derive(Default)]
pub(crate) struct Reporter {
    pub(crate) log: Log,
    pub(crate) deferred: Deferred,
    pub(crate) servers: Servers,
}

impl Reporter {
    /// An upgrade that failed or was refused, from a thread that must not block (the signal
    /// thread): written by the report's thread.
    pub(crate) fn upgrade_warning_later(&self, message: String) {
        self.deferred.send(upgrade_line(message));
    }

    /// An upgrade's progress: the new process started, or ready and handed the service. Written
    /// by the report's thread: the upgrade starts on the signal thread, which must not block on a
    /// subscriber that writes to a full pipe.
    #[cfg(unix)]
    pub(crate) fn upgrade_progress(&self, message: String) {
        self.deferred.send(Line::Info {
            phase: "upgrade",
            message,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
