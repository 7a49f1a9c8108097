//! The state one graceful runtime shares between its threads, and how a thread finds it.
//!
//! Every free function of the crate (`spawn`, `shutdown`, ...) acts on "the runtime of the calling
//! thread". Tokio offers no stable way to attach data to a runtime, so each thread the runtime
//! starts (workers and blocking threads, through `on_thread_start`) and the thread that calls
//! `run` carry a thread-local pointer to the runtime's [`Shared`].

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::reason::Reason;
use crate::registry::Registry;
use crate::report::{self, Reporter};
use crate::scope::tree::{ScopeInner, Turns};
use crate::shutdown::state::Shutdown;
use crate::systemd::Systemd;
use crate::task::{TaskInfo, TaskKind};
use crate::upgrade::state::Upgrade;
use crate::watchdog::state::Watchdog;

/// One runtime's state, a field per concern; each field's type owns its behaviour. The methods
/// below are the few places where concerns meet: what a trigger tells everyone, and what a panic
/// or a failed service means under the options.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Set once the tokio runtime is built (the runtime's thread callbacks need `Shared` first).
    tokio: OnceLock<tokio::runtime::Handle>,
    pub(crate) registry: Registry,
    pub(crate) shutdown: Shutdown,
    pub(crate) report: Reporter,
    pub(crate) watchdog: Watchdog,
    pub(crate) systemd: Systemd,
    pub(crate) upgrade: Upgrade,
    /// What a [`Handle`](crate::Handle) reaches (this state while the run lasts, its answer
    /// after), held for `handle()` to hand out: the handle's own, opaque here.
    pub(crate) public: Public,
    /// What a scope's turn does, for the tree and the core to ask for.
    pub(crate) turns: Turns,
}

/// The public side of a runtime, as its entry points gave it: a `Handle`'s state.
pub(crate) type Public = Arc<dyn std::any::Any + Send + Sync>;

impl Shared {
    /// `root` is the token of the program's root scope: the public handle's, so a `Handle` made
    /// before the run waits on the same one.
    ///
    /// `turns` is what a scope's turn does, handed down from that layer.
    pub(crate) fn new(
        config: Config,
        public: Public,
        root: CancellationToken,
        turns: Turns,
    ) -> Arc<Shared> {
        // `#[graceful::test]` runs are not the service the manager watches.
        let systemd = Systemd::from_env(config.exits_process);
        let upgrade = Upgrade::new(config.exits_process, config.upgrade_command.clone());
        Arc::new_cyclic(|runtime| Shared {
            registry: Registry::new(),
            shutdown: Shutdown::new(ScopeInner::root(runtime.clone(), root)),
            config,
            tokio: OnceLock::new(),
            report: Reporter::default(),
            watchdog: Watchdog::default(),
            systemd,
            upgrade,
            public,
            turns,
        })
    }

    /// What a thread of a runtime that has ended sees: the shutdown started for `reason`, every
    /// token cancelled, and a tokio handle whose runtime is gone, so a spawn returns a handle
    /// whose task never runs. Nothing of the real runtime is kept.
    pub(crate) fn ended(
        reason: Option<Reason>,
        public: Public,
        root: CancellationToken,
        turns: Turns,
    ) -> Arc<Shared> {
        let mut config = Config::default();
        config.for_test();
        let shared = Shared::new(config, public, root, turns);
        let gone = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current_thread runtime needs no thread and no I/O driver");
        shared.set_tokio(gone.handle().clone());
        drop(gone);
        shared.start_shutdown(reason.unwrap_or(Reason::Requested));
        shared.shutdown.announce();
        shared
    }

    pub(crate) fn set_tokio(&self, handle: tokio::runtime::Handle) {
        let _ = self.tokio.set(handle);
    }

    pub(crate) fn tokio(&self) -> &tokio::runtime::Handle {
        // `run` sets the handle before it polls anything, and only polled code reaches here.
        self.tokio
            .get()
            .expect("graceful: runtime handle used before the runtime was built")
    }

    /// Starts the shutdown unless it has started; returns whether this call started it.
    ///
    /// Everyone who must know hears it before the sequence wakes: the registry makes its counts
    /// exact, the watchdog arms, systemd hears `STOPPING=1`, an upgrade's unready new process is
    /// killed, and the listeners kept for an upgrade are let go.
    pub(crate) fn start_shutdown(&self, reason: Reason) -> bool {
        let trigger = &self.shutdown.trigger;
        let upgraded = reason == Reason::Upgraded;
        let Some(started) = trigger.start(reason, self.config.grace) else {
            return false;
        };
        if !upgraded {
            self.upgrade.abandon();
        }
        if self.config.exits_process {
            crate::inherited::forget();
        }
        self.registry.watch();
        self.watchdog.arm(started.at, started.deadline);
        self.systemd.stopping(self.config.grace);
        trigger.fire();
        true
    }

    /// `ready()`: start-up is over. Given sockets the program did not claim will never be used,
    /// the old process of an upgrade hears that this one is ready, and so does systemd.
    pub(crate) fn ready(&self) {
        crate::inherited::close_unclaimed();
        crate::inherited::tell_old_process();
        self.systemd.ready();
    }

    /// `shutdown_with_code`: the code is set before the trigger, so the status sees it.
    pub(crate) fn request_with_code(&self, code: u8) {
        self.shutdown.trigger.set_code(code);
        self.start_shutdown(Reason::Requested);
    }

    /// Reports a panic of tracked work, and under `stop_on_panic` shuts down the nearest
    /// isolated scope of the work, or the program. `scope` is the one the work was spawned into
    /// (`None` for the root's): whatever thread reports the panic, that scope handles it.
    pub(crate) fn task_panicked(&self, info: &TaskInfo, scope: Option<&Arc<ScopeInner>>) {
        if info.supervised {
            // Its supervisor reports it, with what it does about it.
            return;
        }
        let (info, isolating) = in_scope(info, scope);
        let before = self.report.log.mark();
        report::panicked(&info);
        self.report.log.panicked(&info);
        // A panicking hook is reported and the next one runs: it never stops the program.
        if self.config.stop_on_panic && info.kind != TaskKind::Hook {
            if let Some(scope) = isolating {
                scope.begin_turn(Some(before));
                return;
            }
            let task = if info.name.is_empty() {
                Cow::Owned(info.to_string())
            } else {
                info.name.clone()
            };
            self.panic_stops(task);
        }
    }

    /// A panic that stops the program: the status becomes 101.
    pub(crate) fn panic_stops(&self, task: Cow<'static, str>) {
        self.shutdown.trigger.set_panicked();
        self.start_shutdown(Reason::Panic { task });
    }

    /// Reports a failed service of `scope` (`None` for the root's), and under `stop_on_error`
    /// shuts down the nearest isolated scope of the service, or the program.
    pub(crate) fn service_failed(
        &self,
        info: &TaskInfo,
        error: &str,
        scope: Option<&Arc<ScopeInner>>,
    ) {
        let (info, isolating) = in_scope(info, scope);
        let before = self.report.log.mark();
        report::service_failed(&info, error);
        self.report.log.failed(&info, error);
        if self.config.stop_on_error {
            if let Some(scope) = isolating {
                scope.begin_turn(Some(before));
                return;
            }
            self.shutdown.trigger.set_failed();
            self.start_shutdown(Reason::Failed {
                task: info.name.clone(),
            });
        }
    }
}

/// `info` with the scope the work was spawned into, and that scope's nearest isolated scope:
/// where a failure of the work is handled. Never the scope the reporting thread has entered: a
/// panic in the `Drop` of cancelled work, or one reported by the spawner of work that ended
/// before its entry was filled, is reported from another scope's thread.
fn in_scope(
    info: &TaskInfo,
    scope: Option<&Arc<ScopeInner>>,
) -> (TaskInfo, Option<Arc<ScopeInner>>) {
    let mut info = info.clone();
    let Some(scope) = scope else {
        return (info, None);
    };
    if info.scope.is_none() {
        info.scope = scope.group().cloned();
    }
    (info, scope.isolating())
}

thread_local! {
    /// The runtime this thread acts on. It owns a count of it; [`FAST`] is what lookups read.
    static CURRENT: Current = const { Current(RefCell::new(None)) };
    /// The pointer of `CURRENT`'s `Arc`, or null. A `Cell` of a pointer has nothing to drop, so
    /// reading it needs no check of the thread-local's state: every spawn and every end of
    /// tracked work looks the runtime up, and that check was a fifth of the lookup.
    static FAST: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

struct Current(RefCell<Option<Arc<Shared>>>);

impl Current {
    /// Puts `shared` in, returning what was there, and points [`FAST`] at it.
    fn replace(&self, shared: Option<Arc<Shared>>) -> Option<Arc<Shared>> {
        FAST.set(shared.as_ref().map_or(std::ptr::null(), Arc::as_ptr));
        self.0.replace(shared)
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        // The thread is exiting: whatever its other thread-locals drop later (a task freed with
        // its worker) must see no runtime rather than a freed one.
        FAST.set(std::ptr::null());
    }
}

/// Runs `f` with the graceful runtime of this thread, if there is one.
///
/// During thread-local destruction (a task dropped as its thread exits) there is no runtime to
/// speak of, and the functions act as "outside a runtime".
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(Option<&Arc<Shared>>) -> R) -> R {
    let current = FAST.get();
    if current.is_null() {
        return f(None);
    }
    // SAFETY: `FAST` is non-null only while `CURRENT` holds the `Arc` it points into (every
    // change of `CURRENT` goes through `Current::replace`, and its destructor clears `FAST`).
    // That `Arc` stays alive while `f` runs: replacing it (an `Enter` inside `f`) moves it into
    // the guard, which puts it back before it drops. `ManuallyDrop` leaves its count alone.
    let shared = ManuallyDrop::new(unsafe { Arc::from_raw(current) });
    f(Some(&shared))
}

/// The runtime of this thread, or the panic the docs promise to callers outside one.
#[track_caller]
pub(crate) fn expect(what: &str) -> Arc<Shared> {
    with_expect(what, Arc::clone)
}

/// Runs `f` with the runtime of this thread, without the `Arc` clone of [`expect`]: the spawn
/// path is hot, and two spawners cloning one `Arc` contend on its counter.
#[track_caller]
#[inline]
pub(crate) fn with_expect<R>(what: &str, f: impl FnOnce(&Arc<Shared>) -> R) -> R {
    match with(|shared| shared.map(f)) {
        Some(r) => r,
        None => outside(what),
    }
}

#[cold]
#[track_caller]
fn outside(what: &str) -> ! {
    panic!("{what} called outside #[graceful::main] or graceful::Builder::run")
}

/// Makes `shared` the runtime of this thread until the guard drops, restoring what was there.
pub(crate) struct Enter {
    previous: Option<Arc<Shared>>,
}

pub(crate) fn enter(shared: Arc<Shared>) -> Enter {
    let previous = CURRENT.with(|current| current.replace(Some(shared)));
    Enter { previous }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|current| current.replace(previous));
    }
}

/// For `on_thread_start`: the runtime's own threads carry it for their whole life.
pub(crate) fn set_for_thread(shared: Option<Arc<Shared>>) {
    let _ = CURRENT.try_with(|current| current.replace(shared));
}
