//! Scopes: named, nested groups of tracked work, each with its own turn in the shutdown.
//!
//! The root scope is the program: its token, stop flag, phase and hooks are the ones the
//! sequence has always used. Every other scope is a child of another and takes its turn after its
//! parent's own work has drained (see `turn.rs`). Work spawned into a scope runs with that scope
//! as the *current scope* of its thread while it is polled, so the free functions called from it
//! (`spawn`, `shutdown_requested`, `on_shutdown`, …) act on the scope.
//!
//! A scope's work is registry entries grouped under the scope's path (an `Arc<str>` whose
//! pointer, not its text, is the group), plus counts kept by the scope itself, which its turn
//! waits on. A scope is freed once no handle, no work and no child holds it: a scope per
//! connection costs nothing once the connection is done.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context;
use crate::runtime::Runtime;
use crate::shutdown::ShutdownRequested;
use crate::task::TaskInfo;

pub(crate) mod partial;
pub(crate) mod tree;
pub(crate) mod turn;
mod work;

pub(crate) use tree::{current, ScopeInner, SEPARATOR};

pub use partial::{ScopeFinished, ScopeShutdown};

/// A named group of tracked work that stops at its own turn in the shutdown, after the work that
/// made it.
///
/// Its work stops after the work of the scope that created it, and before the scopes that it
/// [`depends_on`]. Scopes nest; a scope's path joins the names (`http/conn-42`).
///
/// `Scope` is a cheap handle (`Clone + Send + Sync`). It has the calls of the crate root, acting
/// on the scope: [`spawn`](Scope::spawn), [`spawn_service`](Scope::spawn_service),
/// [`spawn_blocking`](Scope::spawn_blocking), [`on_shutdown`](Scope::on_shutdown),
/// [`shutdown_requested`](Scope::shutdown_requested), … Work running in a scope has it as its
/// *current scope*: the crate's free functions called from that work act on the scope, so library
/// code gets the scope's timing without knowing it.
///
/// Work spawned through a `Scope` whose runtime has ended never runs: its handle yields a
/// cancelled `JoinError`, as for any spawn on a thread of an ended runtime.
///
/// In the program's shutdown each scope takes its turn: its own work is announced, cancelled
/// (`spawn` tasks) and drained (services, protected futures, blocking jobs); then its child
/// scopes take theirs, concurrently; then its hooks run. Everything shares the program's
/// deadline.
///
/// [`depends_on`]: Scope::depends_on
///
/// # Examples
///
/// A database driver must outlive the services that use it: in a scope of its own it stops after
/// them, where a `spawn` task would be cancelled first.
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::sync::{Arc, Mutex};
///
/// let order = Arc::new(Mutex::new(Vec::new()));
/// let log = order.clone();
/// graceful::Builder::new().signals([]).run(async move {
///     let db = graceful::scope("db");
///     let driver_log = log.clone();
///     db.spawn_service("driver", async move {
///         graceful::shutdown_requested().await; // the scope's turn, not the program's start
///         driver_log.lock().unwrap().push("driver stopped");
///     });
///     let service_log = log.clone();
///     graceful::spawn_service("api", async move {
///         graceful::shutdown_requested().await;
///         service_log.lock().unwrap().push("api drained");
///     });
/// });
/// assert_eq!(*order.lock().unwrap(), ["api drained", "driver stopped"]);
/// ```
#[derive(Clone)]
pub struct Scope {
    pub(crate) inner: Arc<ScopeInner>,
}

/// The scope that `graceful::scope` and the free functions act on from this thread: the current
/// scope, or the root of the thread's runtime.
fn here(shared: &Arc<Runtime>) -> Arc<ScopeInner> {
    current().unwrap_or_else(|| shared.shutdown().root.clone())
}

/// Creates a child scope named `name` under the current scope (the root outside any).
///
/// Its path is its parent's joined with `/`. Dropping every handle does not end the scope's
/// work; a scope whose handles are all dropped and whose work has all ended is freed.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let http = graceful::scope("http");
///     let conn = http.scope("conn-42");
///     assert_eq!(conn.path(), "http/conn-42");
///     let seen = conn
///         .spawn(async { graceful::current_scope().path().to_string() })
///         .await
///         .unwrap();
///     assert_eq!(seen, "http/conn-42");
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime, or if `name` contains `/`.
#[track_caller]
pub fn scope(name: impl Into<Cow<'static, str>>) -> Scope {
    let name = name.into();
    let parent = context::with_expect("graceful::scope", here);
    Scope::child_of(&parent, name)
}

/// Returns the scope the calling code runs in (the root outside any scope).
///
/// That is the scope its task was spawned into, or the root (the whole program) elsewhere.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     assert_eq!(graceful::current_scope().path(), "");
///     let jobs = graceful::scope("jobs");
///     let inside = jobs.spawn(async { graceful::current_scope().name().to_string() });
///     assert_eq!(inside.await.unwrap(), "jobs");
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn current_scope() -> Scope {
    Scope {
        inner: context::with_expect("graceful::current_scope", here),
    }
}

/// Panics at the caller's line if `name` cannot name a scope.
#[track_caller]
pub(crate) fn check_name(name: &str) {
    assert!(
        !name.contains(SEPARATOR),
        "graceful: a scope name cannot contain `/` (it joins names into paths): {name:?}"
    );
}

impl Scope {
    #[track_caller]
    pub(crate) fn child_of(parent: &Arc<ScopeInner>, name: Cow<'static, str>) -> Scope {
        check_name(&name);
        let path: Arc<str> = if parent.is_root() {
            Arc::from(&*name)
        } else {
            Arc::from(format!("{}{SEPARATOR}{name}", parent.path))
        };
        let inner = ScopeInner::child(parent, name, path);
        turn::joined_late(&inner);
        Scope { inner }
    }

    /// Creates a child scope named `name` under this one.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let tenant = graceful::scope("tenants").scope("acme");
    ///     assert_eq!(tenant.path(), "tenants/acme");
    /// });
    /// ```
    ///
    /// # Panics
    ///
    /// If `name` contains `/`.
    #[track_caller]
    pub fn scope(&self, name: impl Into<Cow<'static, str>>) -> Scope {
        Scope::child_of(&self.inner, name.into())
    }

    /// Makes `other`'s turn in the shutdown wait until this scope has finished.
    ///
    /// Finished means its subtree and hooks included: `workers.depends_on(&db)` stops the workers
    /// before the database. `other` may be an ancestor (`child.depends_on(&parent)`: the parent's
    /// own work waits for the child).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// let log = order.clone();
    /// graceful::Builder::new().signals([]).run(async move {
    ///     let db = graceful::scope("db");
    ///     let workers = graceful::scope("workers").depends_on(&db);
    ///     for (scope, name) in [(&db, "db"), (&workers, "workers")] {
    ///         let log = log.clone();
    ///         scope.on_shutdown(async move { log.lock().unwrap().push(name) });
    ///     }
    /// });
    /// assert_eq!(*order.lock().unwrap(), ["workers", "db"]);
    /// ```
    ///
    /// # Panics
    ///
    /// If the dependency would make a cycle (a scope on itself, a parent on its child, or a loop
    /// through several scopes); the message names the cycle.
    #[track_caller]
    pub fn depends_on(self, other: &Scope) -> Scope {
        turn::add_dependency(&self.inner, &other.inner);
        self
    }

    /// Makes `stop_on_panic` and `stop_on_error` shut down this scope instead of the program.
    ///
    /// A failure of work inside it that would stop the program shuts this scope down instead, and
    /// is reported. Set it before spawning work.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let exit = graceful::Builder::new().signals([]).stop_on_panic(true).run(async {
    ///     let plugin = graceful::scope("plugin").isolated();
    ///     plugin.spawn(async { panic!("a plugin bug") });
    ///     plugin.finished().await;
    ///     assert!(plugin.is_shutting_down());
    ///     assert!(!graceful::is_shutting_down(), "the program goes on");
    /// });
    /// assert_eq!(exit.code(), 0);
    /// ```
    pub fn isolated(self) -> Scope {
        self.inner.isolate();
        self
    }

    /// Sets the time budget of this scope's own [`shutdown`](Scope::shutdown) (default: the
    /// runtime's grace).
    ///
    /// It is counted from the call; the program's deadline still comes first.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// graceful::Builder::new().signals([]).run(async {
    ///     let batch = graceful::scope("batch").grace(Duration::from_millis(50));
    ///     batch.spawn_service("stuck", std::future::pending::<()>());
    ///     let report = batch.shutdown().await;
    ///     assert_eq!(report.aborted.len(), 1);
    /// });
    /// ```
    pub fn grace(self, grace: Duration) -> Scope {
        self.inner.set_grace(grace);
        self
    }

    /// The scope's name (`""` for the root).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     assert_eq!(graceful::scope("db").name(), "db");
    /// });
    /// ```
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The scope's path: the names from the root down, joined by `/` (`""` for the root).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     assert_eq!(graceful::scope("a").scope("b").path(), "a/b");
    /// });
    /// ```
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Returns whether this scope is shutting down: its own shutdown or the program's has begun.
    ///
    /// The program's as [`is_shutting_down()`](crate::is_shutting_down) answers it, or this scope's
    /// own partial [`shutdown`](Scope::shutdown). Whether it is this scope's turn to stop is
    /// [`shutdown_requested`](Scope::shutdown_requested).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let tenant = graceful::scope("tenant");
    ///     let other = graceful::scope("other");
    ///     tenant.shutdown().await;
    ///     assert!(tenant.is_shutting_down());
    ///     assert!(!other.is_shutting_down(), "only the tenant stopped");
    ///     graceful::shutdown();
    ///     assert!(other.is_shutting_down(), "the program's shutdown has begun");
    /// });
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        let program = self
            .inner
            .runtime()
            .is_some_and(|s| s.shutdown().trigger.started().is_some());
        program || (!self.inner.is_root() && self.inner.is_claimed())
    }

    /// A future that resolves at this scope's announce step.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let jobs = graceful::scope("jobs");
    ///     let stop = jobs.shutdown_requested();
    ///     jobs.spawn_service("worker", async move { stop.await });
    /// });
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub fn shutdown_requested(&self) -> ShutdownRequested {
        ShutdownRequested::from_token(self.inner.token.clone())
    }

    /// A child of this scope's token, cancelled at its announce step.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let jobs = graceful::scope("jobs");
    ///     let token = jobs.token();
    ///     assert!(!token.is_cancelled());
    /// });
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.inner.token.child_token()
    }

    /// The live tracked work of this scope and the scopes below it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let db = graceful::scope("db");
    ///     db.spawn_service("driver", graceful::shutdown_requested());
    ///     let names: Vec<_> = db.tasks().into_iter().map(|t| t.name).collect();
    ///     assert_eq!(names, ["driver"]);
    /// });
    /// ```
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let Some(shared) = self.inner.runtime() else {
            return Vec::new();
        };
        if self.inner.is_root() {
            return shared.registry().snapshot();
        }
        let groups = turn::groups(&self.inner);
        shared.registry().snapshot_of(&|g| turn::picks(&groups, g))
    }

    /// Returns a future that resolves once all work in this scope and below has ended, stopping
    /// none of it.
    ///
    /// A `main` that awaits scoped work it has not shut down waits for it: during the program's
    /// shutdown, scopes take their turns only after `main` has returned, so such a `main` waits
    /// until the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let batch = graceful::scope("batch");
    ///     for i in 0..3 {
    ///         batch.spawn(async move { i * 2 });
    ///     }
    ///     batch.finished().await;
    ///     assert!(batch.tasks().is_empty());
    /// });
    /// ```
    pub fn finished(&self) -> ScopeFinished {
        ScopeFinished::new(self.inner.clone())
    }

    /// Shuts this scope and its subtree down now, while the program goes on; resolves to their
    /// [`Report`](crate::Report).
    ///
    /// First the scopes that depend on it stop, then it takes its own turn (announce, cancel,
    /// drain, children, hooks), within its [`grace`](Scope::grace) or the program's deadline if
    /// that comes first. What is left at that deadline is aborted.
    ///
    /// It starts when called, not when first polled. A second call, or a call during the
    /// program's shutdown, waits for the same end. Afterwards, work spawned into the scope is
    /// cancelled before its first poll: to restart a subsystem, make a new scope.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let tenant = graceful::scope("tenant-7");
    ///     tenant.spawn_service("sync", async {
    ///         graceful::shutdown_requested().await; // the scope's announce
    ///     });
    ///     let report = tenant.shutdown().await;
    ///     assert!(report.is_clean());
    ///     assert!(!graceful::is_shutting_down(), "only the tenant stopped");
    /// });
    /// ```
    pub fn shutdown(&self) -> ScopeShutdown {
        partial::shutdown(&self.inner)
    }

    /// Aborts all work in this scope and below at once; later spawns into it are cancelled.
    ///
    /// `Drop`s run, and a warning names what was aborted. Work spawned into the scope afterwards is
    /// cancelled before its first poll.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let tenant = graceful::scope("tenant");
    ///     let stuck = tenant.scope("jobs").spawn_service("stuck", std::future::pending::<()>());
    ///     tenant.abort();
    ///     assert!(stuck.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort(&self) {
        partial::abort(&self.inner);
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("path", &self.path())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}
