//! [`Handle`]: one runtime, reachable from any thread — a GUI thread, a test, a `std::thread` the
//! program started — before, during and after its run.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::context;
use crate::reason::Reason;
use crate::runtime::Runtime;
use crate::shutdown::ShutdownRequested;
use crate::task::TaskInfo;

/// A `Clone + Send + Sync` handle to one graceful runtime, usable from any thread.
///
/// Get one with [`handle()`](crate::handle) inside a runtime, or with
/// [`Builder::handle`](crate::Builder::handle) before `run` (it is bound to that builder's first
/// run). Its queries are about the whole program.
///
/// - Before the run starts, [`shutdown`](Handle::shutdown) is remembered (the run starts and
///   shuts down at once, [`Reason::Requested`]), the queries answer as outside a runtime, and
///   [`enter`](Handle::enter) panics.
/// - After the run has ended, the handle answers as a thread of a runtime that has shut down
///   (`is_shutting_down()` is true, `tasks()` is empty, a spawn under [`enter`](Handle::enter)
///   never runs) and keeps nothing of the runtime alive but that answer.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// use std::time::Duration;
///
/// let builder = graceful::Builder::new().signals([]);
/// let handle = builder.handle();
/// // A thread of the program's own stops it, as Ctrl-C would.
/// let stopper = std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_millis(20));
///     handle.shutdown();
/// });
/// builder.run(async { graceful::shutdown_requested().await });
/// stopper.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    /// The run's root token: made with the handle, so `shutdown_requested()` works at any time.
    root: CancellationToken,
}

enum State {
    /// `code` is `Some` once a shutdown was asked for (with its status, if any).
    Before {
        requested: Option<Option<u8>>,
    },
    Running(Arc<Runtime>),
    /// Why its shutdown started and its deadline, if it started one.
    Ended(Option<(Reason, Instant)>),
}

/// What a thread of a runtime that has ended acts on: a core that answers as ended, with a
/// handle of its own that answers as ended too (`started`: why and until when the runtime's
/// shutdown ran, if it did).
pub(crate) fn ended_runtime(started: Option<(Reason, Instant)>) -> Arc<Runtime> {
    let public = Inner::new();
    let root = public.root();
    let reason = started.as_ref().map(|(reason, _)| reason.clone());
    let shared = Runtime::ended(reason, public.clone(), root, crate::scope::partial::turns());
    public.end(started);
    shared
}

impl Inner {
    pub(crate) fn new() -> Arc<Inner> {
        Arc::new(Inner {
            state: Mutex::new(State::Before { requested: None }),
            root: CancellationToken::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn root(&self) -> CancellationToken {
        self.root.clone()
    }

    /// The run starts: returns a shutdown asked for before it, with its code.
    pub(crate) fn bind(&self, shared: &Arc<Runtime>) -> Option<Option<u8>> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Running(shared.clone())) {
            State::Before { requested } => requested,
            _ => panic!("graceful::Builder::handle: this handle's runtime has already run"),
        }
    }

    /// The run has ended: only its answer is kept.
    pub(crate) fn end(&self, started: Option<(Reason, Instant)>) {
        *self.lock() = State::Ended(started);
        self.root.cancel();
    }

    /// Whether no run has taken this handle yet.
    pub(crate) fn is_unbound(&self) -> bool {
        matches!(&*self.lock(), State::Before { .. })
    }

    fn running(&self) -> Option<Arc<Runtime>> {
        match &*self.lock() {
            State::Running(shared) => Some(shared.clone()),
            _ => None,
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.lock() {
            State::Before { .. } => "not started",
            State::Running(shared) if shared.shutdown().trigger.started().is_some() => {
                "shutting down"
            }
            State::Running(_) => "running",
            State::Ended(_) => "ended",
        };
        f.debug_struct("Handle").field("state", &state).finish()
    }
}

impl Handle {
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Handle {
        Handle { inner }
    }

    /// The handle of the runtime whose core this is.
    fn of(shared: &Arc<Runtime>) -> Handle {
        let inner = shared
            .public()
            .clone()
            .downcast::<Inner>()
            .unwrap_or_else(|_| unreachable!("a runtime's public side is the state of its handle"));
        Handle { inner }
    }

    /// Requests the program's shutdown, as [`shutdown()`](crate::shutdown) does. Idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// // Before the run: remembered; the run starts and shuts down at once.
    /// builder.handle().shutdown();
    /// builder.run(async { graceful::shutdown_requested().await });
    /// ```
    pub fn shutdown(&self) {
        self.request(None);
    }

    /// Requests the shutdown and sets the exit status, as
    /// [`shutdown_with_code()`](crate::shutdown_with_code) does.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// builder.handle().shutdown_with_code(4);
    /// let exit = builder.run(async { graceful::shutdown_requested().await });
    /// assert_eq!(exit.code(), 4);
    /// ```
    pub fn shutdown_with_code(&self, code: u8) {
        self.request(Some(code));
    }

    fn request(&self, code: Option<u8>) {
        let mut state = self.inner.lock();
        match &mut *state {
            State::Before { requested } => {
                *requested = Some(code.or(requested.flatten()));
            }
            State::Running(shared) => {
                let shared = shared.clone();
                drop(state);
                match code {
                    Some(code) => shared.request_with_code(code),
                    None => {
                        shared.start_shutdown(Reason::Requested);
                    }
                }
            }
            State::Ended(_) => {}
        }
    }

    /// Returns whether the program's shutdown has started (`false` before the run, `true` after
    /// it).
    ///
    /// True from the trigger on, as [`is_shutting_down()`](crate::is_shutting_down).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// let handle = builder.handle();
    /// assert!(!handle.is_shutting_down());
    /// builder.run(async {});
    /// assert!(handle.is_shutting_down());
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        match &*self.inner.lock() {
            State::Before { .. } => false,
            State::Running(shared) => shared.shutdown().trigger.started().is_some(),
            State::Ended(_) => true,
        }
    }

    /// Why the shutdown started, once it has (kept after the run has ended).
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// let handle = builder.handle();
    /// builder.run(async {});
    /// assert_eq!(handle.reason(), Some(graceful::Reason::MainReturned));
    /// ```
    pub fn reason(&self) -> Option<Reason> {
        match &*self.inner.lock() {
            State::Before { .. } => None,
            State::Running(shared) => shared
                .shutdown()
                .trigger
                .started()
                .map(|s| s.reason.clone()),
            State::Ended(started) => started.as_ref().map(|(reason, _)| reason.clone()),
        }
    }

    /// Returns when the program's grace runs out, once its shutdown has started.
    ///
    /// `None` before; kept after the run has ended. As [`deadline()`](crate::deadline), from any
    /// thread.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// use std::time::Duration;
    ///
    /// let builder = graceful::Builder::new().signals([]).grace(Duration::from_secs(5));
    /// let handle = builder.handle();
    /// assert!(handle.deadline().is_none());
    /// builder.run(async {});
    /// // The shutdown ended well before its deadline.
    /// assert!(handle.deadline().unwrap() > tokio::time::Instant::now());
    /// ```
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        let deadline = match &*self.inner.lock() {
            State::Before { .. } => None,
            State::Running(shared) => shared.shutdown().trigger.started().map(|s| s.deadline),
            State::Ended(started) => started.as_ref().map(|(_, deadline)| *deadline),
        };
        deadline.map(tokio::time::Instant::from_std)
    }

    /// Returns the handle of this thread's graceful runtime, or `None` outside one.
    ///
    /// For library code that uses graceful when the program runs under it and plain tokio otherwise
    /// ([`handle()`](crate::handle) panics outside a runtime, as tokio's `Handle::current` does).
    /// On a thread of a runtime that has ended it is `Some`, and answers as ended.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// // Library code that follows the program's shutdown when there is one.
    /// fn shutting_down() -> bool {
    ///     graceful::Handle::try_current().is_some_and(|handle| handle.is_shutting_down())
    /// }
    ///
    /// assert!(graceful::Handle::try_current().is_none());
    /// assert!(!shutting_down());
    /// graceful::Builder::new().signals([]).run(async {
    ///     assert!(!shutting_down());
    ///     graceful::shutdown();
    ///     assert!(shutting_down());
    /// });
    /// ```
    pub fn try_current() -> Option<Handle> {
        context::with(|shared| shared.map(Handle::of))
    }

    /// Returns a future, awaitable on any runtime, that resolves when the program's shutdown
    /// starts.
    ///
    /// It resolves at the root's announce step, from any thread and at any time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// let requested = builder.handle().shutdown_requested();
    /// builder.run(async {});
    /// // A runtime of the caller's own awaits it.
    /// tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(requested);
    /// ```
    pub fn shutdown_requested(&self) -> ShutdownRequested {
        ShutdownRequested::from_token(self.inner.root.clone())
    }

    /// A snapshot of the runtime's live tracked work; empty before and after the run.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// let handle = builder.handle();
    /// builder.run(async move {
    ///     let names: Vec<_> = handle.tasks().into_iter().map(|t| t.name).collect();
    ///     assert_eq!(names, ["main"]);
    /// });
    /// ```
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.inner
            .running()
            .map(|shared| shared.registry().snapshot())
            .unwrap_or_default()
    }

    /// Makes the free functions act on this runtime on the current thread until the guard is
    /// dropped.
    ///
    /// [`spawn`](crate::spawn), [`shutdown`](crate::shutdown) and the rest then act on it, as
    /// tokio's `Handle::enter` does for tokio's.
    ///
    /// After the runtime has ended, the free functions answer as on a thread of a runtime that
    /// has shut down: `is_shutting_down()` is true, and a spawn returns a handle whose task never
    /// runs and yields a cancelled `JoinError`.
    ///
    /// # Panics
    ///
    /// If the runtime has not started.
    ///
    /// # Examples
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// let builder = graceful::Builder::new().signals([]);
    /// let handle = builder.handle();
    /// builder.run(async {});
    /// // Ended: a spawn never runs, and says so.
    /// let _entered = handle.enter();
    /// assert!(graceful::is_shutting_down());
    /// assert!(graceful::Handle::try_current().unwrap().is_shutting_down());
    /// let task = graceful::spawn(async { 1 });
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert!(rt.block_on(task).unwrap_err().is_cancelled());
    /// ```
    ///
    /// ```
    /// # use graceful_runtime as graceful;
    /// graceful::Builder::new().signals([]).run(async {
    ///     let handle = graceful::handle();
    ///     std::thread::spawn(move || {
    ///         let _entered = handle.enter();
    ///         graceful::spawn_service("from a thread", async {});
    ///         graceful::shutdown();
    ///     })
    ///     .join()
    ///     .unwrap();
    ///     graceful::shutdown_requested().await;
    /// });
    /// ```
    pub fn enter(&self) -> EnterGuard {
        match &*self.inner.lock() {
            State::Running(shared) => EnterGuard {
                _enter: context::enter(shared.clone()),
                _not_send: PhantomData,
            },
            State::Before { .. } => {
                panic!("graceful::Handle::enter: the runtime has not started")
            }
            State::Ended(started) => EnterGuard {
                _enter: context::enter(ended_runtime(started.clone())),
                _not_send: PhantomData,
            },
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Guard returned by [`Handle::enter`]: the free functions act on that runtime until it is dropped.
///
/// Dropped, it puts back whatever they acted on before on this thread.
///
/// It is not `Send`, as tokio's `EnterGuard` is not: it must be dropped on the thread that
/// entered.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let handle = graceful::handle();
///     std::thread::spawn(move || {
///         assert!(graceful::tasks().is_empty(), "outside the runtime");
///         let entered: graceful::EnterGuard = handle.enter();
///         assert!(!graceful::tasks().is_empty());
///         drop(entered);
///         assert!(graceful::tasks().is_empty());
///     })
///     .join()
///     .unwrap();
/// });
/// ```
#[must_use = "the runtime is entered only while the guard lives"]
pub struct EnterGuard {
    _enter: context::Enter,
    /// `!Send` (and `Sync`), as tokio's guard is: dropped on another thread, it would put this
    /// thread's previous runtime back there and leave this one entered here.
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

impl fmt::Debug for EnterGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterGuard").finish_non_exhaustive()
    }
}

/// A handle to the runtime of this thread, usable from any other thread.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let handle = graceful::handle();
///     // A plain thread, outside the runtime, stops the program.
///     std::thread::spawn(move || handle.shutdown()).join().unwrap();
///     graceful::shutdown_requested().await;
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
pub fn handle() -> Handle {
    context::with_expect("graceful::handle", Handle::of)
}
