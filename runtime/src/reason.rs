//! `Reason`, what started a shutdown: a plain value the trigger records and the report shows.

use std::borrow::Cow;

/// Why the shutdown started, as [`reason()`](crate::reason) tells it.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use graceful::Reason;
///
/// graceful::Builder::new().signals([]).run(async {
///     assert_eq!(graceful::reason(), None);
///     graceful::shutdown();
///     assert_eq!(graceful::reason(), Some(Reason::Requested));
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A captured signal ([`Signal::SIGTERM`](crate::Signal::SIGTERM), …).
    Signal(crate::Signal),
    /// Requested by [`shutdown()`](crate::shutdown),
    /// [`shutdown_with_code()`](crate::shutdown_with_code) or a [`Handle`](crate::Handle).
    Requested,
    /// `main` returned successfully (and `run_forever` is off).
    MainReturned,
    /// `main` returned a failure (`Err`, or a failing `ExitCode`).
    MainFailed,
    /// `main` panicked, or a tracked task did under `stop_on_panic`.
    Panic {
        /// The work that panicked: `"main"`, the task's name, or `task at file:line:col` if
        /// unnamed.
        task: Cow<'static, str>,
    },
    /// A service failed (returned `Err`, or a failing `ExitCode`) under `stop_on_error`.
    Failed {
        /// The service's name.
        task: Cow<'static, str>,
    },
    /// A restart without downtime handed over to the new process; this one drains and exits 0.
    ///
    /// The new process is ready; see [`upgrade()`](crate::upgrade).
    Upgraded,
}
