//! The state one graceful runtime shares between its threads, and how a thread finds it.
//!
//! Every free function of the crate (`spawn`, `shutdown`, ...) acts on "the runtime of the calling
//! thread". Tokio offers no stable way to attach data to a runtime, so each thread the runtime
//! starts (workers and blocking threads, through `on_thread_start`) and the thread that calls
//! `run` carry a thread-local pointer to the runtime's [`Shared`].

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::blocking::StopFlag;
use crate::builder::Config;
use crate::registry::Registry;
use crate::report::{Deferred, Log};
use crate::shutdown::Reason;
use crate::shutdown::{Hooks, Trigger};
use crate::systemd::Notifier;
use crate::watchdog::Watchdog;

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Set once the tokio runtime is built (the runtime's thread callbacks need `Shared` first).
    pub(crate) handle: OnceLock<tokio::runtime::Handle>,
    pub(crate) registry: Registry,
    /// Cancelled at the announce step; `token()` hands out children of it. It is the public
    /// handle's token, so a `Handle` made before the run waits on the same one.
    pub(crate) root: CancellationToken,
    /// What a [`Handle`](crate::Handle) reaches: this state while the run lasts, its answer after.
    pub(crate) public: Arc<crate::handle::Inner>,
    pub(crate) stop: StopFlag,
    pub(crate) trigger: Trigger,
    pub(crate) hooks: Hooks,
    pub(crate) watchdog: Watchdog,
    /// Claimed by the forced exit (see `exit`): a second signal and the watchdog may race.
    pub(crate) forcing: AtomicBool,
    /// The report's thread, for lines the signal thread and the watchdog must not write.
    pub(crate) deferred: Deferred,
    /// Failures and panics as they happen, for the report.
    pub(crate) log: Log,
    /// systemd's notify socket, when the process runs under a `Type=notify` unit.
    pub(crate) notifier: Option<Notifier>,
    pub(crate) ready_sent: AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: Config, public: Arc<crate::handle::Inner>) -> Arc<Shared> {
        // `#[graceful::test]` runs are not the service the manager watches.
        let config_notifies = config.exits_process;
        Arc::new(Shared {
            registry: Registry::new(),
            config,
            handle: OnceLock::new(),
            root: public.root(),
            public,
            stop: StopFlag::new(),
            trigger: Trigger::default(),
            hooks: Hooks::default(),
            watchdog: Watchdog::default(),
            forcing: AtomicBool::new(false),
            deferred: Deferred::default(),
            log: Log::default(),
            notifier: if config_notifies {
                Notifier::from_env()
            } else {
                None
            },
            ready_sent: AtomicBool::new(false),
        })
    }

    /// What a thread of a runtime that has ended sees: the shutdown started for `reason`, every
    /// token cancelled, and a tokio handle whose runtime is gone, so a spawn returns a handle
    /// whose task never runs. Nothing of the real runtime is kept.
    pub(crate) fn ended(reason: Option<Reason>) -> Arc<Shared> {
        let shared = Shared::new(
            crate::Builder::new().into_config(),
            crate::handle::Inner::new(),
        );
        let gone = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current_thread runtime needs no thread and no I/O driver");
        let _ = shared.handle.set(gone.handle().clone());
        drop(gone);
        shared.start_shutdown(reason.unwrap_or(Reason::Requested));
        shared.root.cancel();
        shared.stop.raise();
        shared
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        // `run` sets the handle before it polls anything, and only polled code reaches here.
        self.handle
            .get()
            .expect("graceful: runtime handle used before the runtime was built")
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Runs `f` with the graceful runtime of this thread, if there is one.
///
/// `try_with`: during thread-local destruction (a task dropped as its thread exits) there is no
/// runtime to speak of, and the functions must act as "outside a runtime", not panic.
pub(crate) fn with<R>(f: impl FnOnce(Option<&Arc<Shared>>) -> R) -> R {
    let mut f = Some(f);
    let out = CURRENT.try_with(|cell| match cell.try_borrow() {
        Ok(current) => Some((f.take().unwrap())(current.as_ref())),
        Err(_) => None,
    });
    match out {
        Ok(Some(r)) => r,
        _ => (f.take().unwrap())(None),
    }
}

/// The runtime of this thread, or the panic the docs promise to callers outside one.
#[track_caller]
pub(crate) fn expect(what: &str) -> Arc<Shared> {
    with_expect(what, Arc::clone)
}

/// Runs `f` with the runtime of this thread, without the `Arc` clone of [`expect`]: the spawn
/// path is hot, and two spawners cloning one `Arc` contend on its counter.
#[track_caller]
pub(crate) fn with_expect<R>(what: &str, f: impl FnOnce(&Arc<Shared>) -> R) -> R {
    match with(|shared| shared.map(f)) {
        Some(r) => r,
        None => panic!("{what} called outside #[graceful::main] or graceful::Builder::run"),
    }
}

/// Makes `shared` the runtime of this thread until the guard drops, restoring what was there.
pub(crate) struct Enter {
    previous: Option<Arc<Shared>>,
}

pub(crate) fn enter(shared: Arc<Shared>) -> Enter {
    let previous = CURRENT.with(|cell| cell.replace(Some(shared)));
    Enter { previous }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|cell| cell.replace(previous));
    }
}

/// For `on_thread_start`: the runtime's own threads carry it for their whole life.
pub(crate) fn set_for_thread(shared: Option<Arc<Shared>>) {
    let _ = CURRENT.try_with(|cell| cell.replace(shared));
}

/// For unit tests: a runtime's shared state, made the one of this thread, with no tokio runtime.
#[cfg(test)]
pub(crate) fn enter_for_test() -> (Arc<Shared>, Enter) {
    let shared = Shared::new(
        crate::Builder::new().into_config(),
        crate::handle::Inner::new(),
    );
    let enter = enter(shared.clone());
    (shared, enter)
}
