//! The program's shutdown summary: the counts of each step, and the one event that ends the
//! shutdown.

use std::fmt::{self, Write as _};
use std::time::Instant;

use super::{lock, millis, stderr_line, to_stderr, Age, Log, Report};
use crate::reason::Reason;
use crate::shutdown::trigger::Started;

/// Counts for the final summary event, and the report being built.
pub(crate) struct Summary {
    at: Instant,
    deadline: Instant,
    pub(crate) cancelled: usize,
    pub(crate) hooks_run: usize,
    pub(crate) hooks_panicked: usize,
    pub(crate) report: Report,
}

impl Summary {
    pub(crate) fn new(started: &Started) -> Summary {
        Summary {
            at: started.at,
            deadline: started.deadline,
            cancelled: 0,
            hooks_run: 0,
            hooks_panicked: 0,
            report: Report {
                reason: Some(started.reason.clone()),
                ..Report::default()
            },
        }
    }

    /// When the shutdown started.
    pub(crate) fn started_at(&self) -> Instant {
        self.at
    }

    /// The shutdown's deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Writes the summary event and hands over the report.
    pub(crate) fn finish(mut self, log: &Log) -> Report {
        let elapsed = self.at.elapsed();
        let report = &mut self.report;
        report.elapsed = elapsed;
        report.failed = std::mem::take(&mut *lock(&log.failed));
        report.panicked = std::mem::take(&mut *lock(&log.panicked));
        report
            .hooks_not_run
            .extend(std::mem::take(&mut *lock(&log.not_run)));
        let clean = report.finished_in_time();
        let counts = [
            (self.cancelled, "cancelled"),
            (self.hooks_run, "hooks run"),
            (self.hooks_panicked, "hooks failed"),
            (report.hooks_not_run.len(), "hooks not run"),
            (report.aborted.len(), "aborted"),
            (report.abandoned.len(), "abandoned"),
            (report.panicked.len(), "panics"),
            (report.failed.len(), "failed services"),
        ];
        let reason = report.reason.as_ref().expect("set at the start");
        let mut message = format!("shutdown ({}) finished in {}", Cause(reason), Age(elapsed));
        for (i, (n, what)) in counts.iter().filter(|(n, _)| *n > 0).enumerate() {
            let _ = write!(message, "{}{n} {what}", if i == 0 { ": " } else { ", " });
        }
        if clean {
            tracing::info!(target: "graceful", phase = "summary", elapsed_ms = millis(elapsed), "{message}");
        } else if to_stderr() {
            stderr_line(format_args!("{message}"));
        } else {
            tracing::warn!(target: "graceful", phase = "summary", elapsed_ms = millis(elapsed), "{message}");
        }
        self.report
    }
}

/// A reason in the words of the report: `SIGTERM`, `main returned`.
struct Cause<'a>(&'a Reason);

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Reason::Signal(signal) => write!(f, "{signal}"),
            Reason::Requested => f.write_str("requested"),
            Reason::MainReturned => f.write_str("main returned"),
            Reason::MainFailed => f.write_str("main failed"),
            Reason::Panic { task } => write!(f, "{task} panicked"),
            Reason::Failed { task } => write!(f, "service {task:?} failed"),
            Reason::Upgraded => f.write_str("upgraded"),
        }
    }
}
