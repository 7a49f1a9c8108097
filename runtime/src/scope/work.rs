//! The work a scope runs: `Scope`'s counterparts of the crate's spawn functions and
//! `on_shutdown`, which act on the scope rather than on the current one.

use std::borrow::Cow;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::Scope;
use crate::context;
use crate::runtime::Runtime;
use crate::spawn::ServiceOutput;
use crate::stop_flag::StopFlag;
use crate::task::TaskKind;

impl Scope {
    /// Spawns a task into this scope, cancelled at its turn; see [`spawn`](crate::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let jobs = graceful::scope("jobs");
    ///     assert_eq!(jobs.spawn(async { 7 }).await.unwrap(), 7);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let location = Location::caller();
        self.with_runtime(|shared| {
            crate::tracked::spawn_in(shared, &self.inner, TaskKind::Cancellable, location, future)
        })
    }

    /// Spawns a service into this scope, drained at its turn; see
    /// [`spawn_service`](crate::spawn_service).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let db = graceful::scope("db");
    ///     let requested = db.shutdown_requested();
    ///     db.spawn_service("driver", requested);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_service<F>(
        &self,
        name: impl Into<Cow<'static, str>>,
        future: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: ServiceOutput,
    {
        let (location, name) = (Location::caller(), name.into());
        self.with_runtime(|shared| {
            crate::spawn::service_in(shared, Some(&self.inner), name, location, future)
        })
    }

    /// Runs `future` in this scope so that its turn waits for it; see
    /// [`shutdown_waits_for`](crate::shutdown_waits_for).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let db = graceful::scope("db");
    ///     assert_eq!(db.shutdown_waits_for(async { 3 }).await, 3);
    /// });
    /// ```
    #[track_caller]
    pub fn shutdown_waits_for<F>(&self, future: F) -> crate::ShutdownWaitsFor<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let location = Location::caller();
        self.with_runtime(|shared| {
            let scope = (!self.inner.is_root()).then(|| self.inner.clone());
            crate::spawn::protect(shared, scope, location, future)
        })
    }

    /// Runs a blocking job in this scope, stopped at the scope's turn; see
    /// [`spawn_blocking`](crate::spawn_blocking).
    ///
    /// Its [`StopFlag`] is raised at the scope's announce step, and its turn joins it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let io = graceful::scope("io");
    ///     let sum = io.spawn_blocking("sum", |_stop| 2 + 2).await.unwrap();
    ///     assert_eq!(sum, 4);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, name: impl Into<Cow<'static, str>>, job: F) -> JoinHandle<R>
    where
        F: FnOnce(StopFlag) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (location, name) = (Location::caller(), name.into());
        self.with_runtime(|shared| {
            crate::blocking::spawn_blocking_in(shared, Some(&self.inner), name, location, job)
        })
    }

    /// Registers a hook that runs after this scope's subtree has finished; see
    /// [`on_shutdown`](crate::on_shutdown).
    ///
    /// It runs in the scope's turn, or when the scope is freed before its turn (every handle
    /// dropped, all its work ended); last registered first.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// graceful::Builder::new().signals([]).run(async {
    ///     let closed = Arc::new(AtomicBool::new(false));
    ///     let flag = closed.clone();
    ///     let db = graceful::scope("db");
    ///     db.on_shutdown(async move { flag.store(true, Ordering::SeqCst) }); // close the pool
    ///     assert!(db.shutdown().await.is_clean());
    ///     assert!(closed.load(Ordering::SeqCst), "the hook ran at the scope's turn");
    /// });
    /// ```
    #[track_caller]
    pub fn on_shutdown<F>(&self, hook: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.add_hook(Location::caller(), Box::pin(hook));
    }

    /// Runs `f` with the scope's runtime; once that has ended, with what a thread of an ended
    /// runtime sees, so spawned work never runs and its handle yields a cancelled `JoinError`.
    ///
    /// On the runtime's own threads, with the thread's count of it: upgrading the scope's weak
    /// reference would make every spawning thread share one counter.
    #[inline]
    fn with_runtime<R>(&self, f: impl FnOnce(&Arc<Runtime>) -> R) -> R {
        context::with(|here| match here {
            Some(shared) if self.inner.belongs_to(shared) => f(shared),
            _ => f(&self
                .inner
                .runtime()
                .unwrap_or_else(|| crate::handle::ended_runtime(None))),
        })
    }
    /// Runs a supervised service in this scope; see [`supervise`](crate::supervise).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let queue = graceful::scope("queue");
    ///     let consumer = queue.supervise("consumer", graceful::Restart::on_failure(), || async {});
    ///     consumer.stopped().await;
    /// });
    /// ```
    #[track_caller]
    pub fn supervise<F, Fut>(
        &self,
        name: impl Into<Cow<'static, str>>,
        policy: crate::Restart,
        factory: F,
    ) -> crate::Supervisor
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ServiceOutput,
    {
        let location = Location::caller();
        let name = name.into();
        self.with_runtime(|shared| {
            crate::supervise::start(shared, &self.inner, name, policy, location, factory)
        })
    }
}
