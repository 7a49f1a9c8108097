//! `Report`, what a shutdown ended with: a plain value the sequence fills and `run_with_report`
//! and `Scope::shutdown` return.

use std::time::Duration;

use crate::reason::Reason;
use crate::task::TaskInfo;

/// What a shutdown ended with: why it started, how long it took, and what did not end well.
///
/// [`Builder::run_with_report`](crate::Builder::run_with_report) returns it, for programs that
/// embed the runtime; `#[graceful::test]` fails unless it [`is_clean`](Report::is_clean).
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::time::Duration;
///
/// let (exit, report) = graceful::Builder::new()
///     .signals([])
///     .grace(Duration::from_millis(100))
///     .run_with_report(async {
///         graceful::spawn_service("stuck", std::future::pending::<()>());
///     });
/// assert_eq!(report.reason, Some(graceful::Reason::MainReturned));
/// assert_eq!(report.aborted[0].name, "stuck");
/// assert!(!report.is_clean());
/// // Aborted work makes the shutdown unclean: not 0, though `main` returned.
/// assert_eq!(exit.code(), 1);
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Why the shutdown started; `None` if the runtime never started.
    pub reason: Option<Reason>,
    /// How long the shutdown took, from the trigger to the end of the sequence.
    pub elapsed: Duration,
    /// Async work still running at the deadline, aborted there.
    pub aborted: Vec<TaskInfo>,
    /// Blocking jobs still running at the deadline, abandoned (a thread cannot be killed).
    pub abandoned: Vec<TaskInfo>,
    /// Services that failed, with the error's `Debug` text.
    pub failed: Vec<Failure>,
    /// Tracked work that panicked, a `Drop` of cancelled work and hooks included.
    pub panicked: Vec<TaskInfo>,
    /// Hooks the deadline left no time for.
    pub hooks_not_run: Vec<TaskInfo>,
}

/// A service that failed, and the error's `Debug` text.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// let (_, report) = graceful::Builder::new().signals([]).run_with_report(async {
///     let loader = graceful::spawn_service("loader", async { Err::<(), _>("no such table") });
///     loader.await.unwrap().unwrap_err();
/// });
/// let failure: &graceful::Failure = &report.failed[0];
/// assert_eq!(failure.task.name, "loader");
/// assert_eq!(failure.error, "\"no such table\"");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Failure {
    /// The service that failed.
    pub task: TaskInfo,
    /// The error's `Debug` text.
    pub error: String,
}

impl Report {
    /// Whether everything ended well: nothing aborted, abandoned, failed or panicked, and every
    /// hook ran.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let (_, report) = graceful::Builder::new().signals([]).run_with_report(async {});
    /// assert!(report.is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.finished_in_time() && self.failed.is_empty() && self.panicked.is_empty()
    }

    /// Nothing was cut at the deadline: the exit status may be 0.
    pub(crate) fn finished_in_time(&self) -> bool {
        self.aborted.is_empty() && self.abandoned.is_empty() && self.hooks_not_run.is_empty()
    }

    /// One line per thing that did not end well, for a failing `#[graceful::test]`.
    pub(crate) fn problems(&self) -> Vec<String> {
        let lines = [
            (&self.aborted, "aborted at the deadline"),
            (&self.abandoned, "abandoned at the deadline"),
            (&self.panicked, "panicked"),
            (&self.hooks_not_run, "not run"),
        ];
        let mut out: Vec<String> = lines
            .iter()
            .flat_map(|(items, what)| items.iter().map(move |item| format!("{item} {what}")))
            .collect();
        out.extend(
            self.failed
                .iter()
                .map(|f| format!("{} failed: {}", f.task, f.error)),
        );
        out
    }
}
