//! The public description of tracked work: [`TaskKind`] and [`TaskInfo`], as
//! [`tasks()`](crate::tasks), the report and the dump table show it.

use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

/// What kind of tracked work a [`TaskInfo`] describes; it decides what the shutdown does with it.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use graceful::{Builder, TaskKind};
///
/// let exit = Builder::new().signals([]).run(async {
///     graceful::spawn_service("ticker", async {
///         graceful::shutdown_requested().await;
///     });
///     let kinds: Vec<TaskKind> = graceful::tasks().iter().map(|t| t.kind).collect();
///     assert!(kinds.contains(&TaskKind::Service));
/// });
/// assert_eq!(exit.code(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// Started by [`spawn`](crate::spawn): cancelled as soon as the shutdown starts.
    ///
    /// "Task" means any tracked work, as in [`tasks()`](crate::tasks); this is one kind of it.
    Cancellable,
    /// Started by [`spawn_service`](crate::spawn_service), or `main` itself: drained.
    Service,
    /// Started by [`shutdown_waits_for`](crate::shutdown_waits_for): waited for, never cancelled.
    Protected,
    /// Started by [`spawn_blocking`](crate::spawn_blocking): joined, then abandoned.
    Blocking,
    /// A running [`on_shutdown`](crate::on_shutdown) hook.
    Hook,
}

pub(crate) const KINDS: usize = 5;

impl TaskKind {
    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The inverse of [`index`](Self::index); an out-of-range index is a `Hook`.
    #[inline]
    pub(crate) fn from_index(index: usize) -> TaskKind {
        match index {
            0 => TaskKind::Cancellable,
            1 => TaskKind::Service,
            2 => TaskKind::Protected,
            3 => TaskKind::Blocking,
            _ => TaskKind::Hook,
        }
    }

    /// The word for the dump table's KIND column.
    pub(crate) fn column(self) -> &'static str {
        match self {
            TaskKind::Cancellable => "task",
            TaskKind::Service => "service",
            TaskKind::Protected => "protected",
            TaskKind::Blocking => "blocking",
            TaskKind::Hook => "hook",
        }
    }

    /// The words for a sentence: `blocking job "indexer" at ...`.
    fn noun(self) -> &'static str {
        match self {
            TaskKind::Cancellable => "task",
            TaskKind::Service => "service",
            TaskKind::Protected => "protected future",
            TaskKind::Blocking => "blocking job",
            TaskKind::Hook => "hook",
        }
    }
}

/// A snapshot of one live piece of tracked work, as [`tasks()`](crate::tasks) returns it.
///
/// Its `Display` is the form the report uses: `service "flusher" at src/main.rs:42:5`, and for
/// work in a scope `service "writer" in workers at src/main.rs:12:5`.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use graceful::{Builder, TaskKind};
///
/// Builder::new().signals([]).run(async {
///     graceful::spawn_service("flusher", graceful::shutdown_requested());
///     let info = graceful::tasks()
///         .into_iter()
///         .find(|t| t.name == "flusher")
///         .unwrap();
///     assert_eq!(info.kind, TaskKind::Service);
///     assert!(info.to_string().starts_with("service \"flusher\" at "));
/// });
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The name given at spawn; empty for [`spawn`](crate::spawn) tasks, protected futures and
    /// hooks.
    pub name: Cow<'static, str>,
    /// What kind of work it is, which decides what the shutdown does with it.
    pub kind: TaskKind,
    /// Where it was spawned (`#[track_caller]`).
    pub location: &'static Location<'static>,
    /// How long it has been running.
    pub age: Duration,
    /// The path of the [`Scope`](crate::Scope) it runs in (`"http/conn-42"`); `None` at the root.
    pub scope: Option<Arc<str>>,
    /// How many times its supervisor restarted it ([`supervise`](crate::supervise)); 0 otherwise.
    pub restarts: u32,
    /// Where it was waiting, when the report took a task dump (the `taskdump` feature): its await
    /// chain, outermost first, as the report prints it — the program's own frames
    /// (`app::flusher at src/main.rs:3`) with runs of tokio's, std's and this crate's folded
    /// into one line (`… 3 frames in tokio, core`). `None` where no dump was taken, and for work
    /// a dump cannot see (`main`, blocking jobs, hooks).
    pub chain: Option<Vec<String>>,
    /// The tokio task it runs as, which a dump names; `None` for work that is not a task.
    pub(crate) task_id: Option<tokio::task::Id>,
    is_main: bool,
    pub(crate) supervised: bool,
}

impl TaskInfo {
    pub(crate) fn is_main(&self) -> bool {
        self.is_main
    }
}

impl TaskInfo {
    /// Live work as the registry lists it.
    pub(crate) fn listed(
        name: Cow<'static, str>,
        kind: TaskKind,
        location: &'static Location<'static>,
        age: Duration,
        is_main: bool,
    ) -> TaskInfo {
        TaskInfo {
            name,
            kind,
            location,
            age,
            scope: None,
            restarts: 0,
            chain: None,
            task_id: None,
            is_main,
            supervised: false,
        }
    }

    /// Work that is described, not listed from the registry (its age is not known).
    fn described(
        name: Cow<'static, str>,
        kind: TaskKind,
        location: &'static Location<'static>,
        is_main: bool,
    ) -> TaskInfo {
        TaskInfo::listed(name, kind, location, Duration::ZERO, is_main)
    }

    /// `main`, run at `location`.
    pub(crate) fn main(location: &'static Location<'static>) -> TaskInfo {
        TaskInfo::described(Cow::Borrowed("main"), TaskKind::Service, location, true)
    }

    /// A hook, by where it was registered.
    pub(crate) fn hook(location: &'static Location<'static>) -> TaskInfo {
        TaskInfo::described(Cow::Borrowed(""), TaskKind::Hook, location, false)
    }

    /// A service described by its name and spawn location, as the report names it.
    pub(crate) fn service(
        name: Cow<'static, str>,
        location: &'static Location<'static>,
    ) -> TaskInfo {
        TaskInfo::described(name, TaskKind::Service, location, false)
    }
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_main {
            return f.write_str("main");
        }
        f.write_str(self.kind.noun())?;
        if !self.name.is_empty() {
            write!(f, " {:?}", self.name)?;
        }
        if let Some(scope) = &self.scope {
            write!(f, " in {scope}")?;
        }
        write!(f, " at {}", self.location)
    }
}
