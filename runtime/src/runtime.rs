//! The core: one runtime's state, a field per concern, and the reactions that cross concerns.
//!
//! Each field's type owns its behaviour; the fields are private, and what happens when one
//! concern's event matters to another (a trigger, a panic or a failed service under the options,
//! `ready()`) is a method here and nowhere else.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::reason::Reason;
use crate::registry::{Registry, Which};
use crate::report::{self, Reporter};
use crate::scope::tree::{ScopeInner, Turns};
use crate::shutdown::state::Shutdown;
use crate::systemd::Systemd;
use crate::task::{TaskInfo, TaskKind};
use crate::taskdump;
use crate::upgrade::state::Upgrade;
use crate::watchdog::state::Watchdog;

/// One runtime's state, a field per concern; each field's type owns its behaviour. The methods
/// below are the few places where concerns meet: what a trigger tells everyone, and what a panic
/// or a failed service means under the options.
pub(crate) struct Runtime {
    config: Config,
    /// Set once the tokio runtime is built (the runtime's thread callbacks need `Runtime` first).
    tokio: OnceLock<tokio::runtime::Handle>,
    registry: Registry,
    shutdown: Shutdown,
    report: Reporter,
    watchdog: Watchdog,
    systemd: Systemd,
    upgrade: Upgrade,
    /// What a [`Handle`](crate::Handle) reaches (this state while the run lasts, its answer
    /// after), held for `handle()` to hand out: the handle's own, opaque here.
    public: Public,
    /// What a scope's turn does, for the tree and the core to ask for.
    turns: Turns,
}

/// The public side of a runtime, as its entry points gave it: a `Handle`'s state.
pub(crate) type Public = Arc<dyn std::any::Any + Send + Sync>;

impl Runtime {
    /// `root` is the token of the program's root scope: the public handle's, so a `Handle` made
    /// before the run waits on the same one.
    ///
    /// `turns` is what a scope's turn does, handed down from that layer.
    pub(crate) fn new(
        config: Config,
        public: Public,
        root: CancellationToken,
        turns: Turns,
    ) -> Arc<Runtime> {
        // `#[graceful::test]` runs are not the service the manager watches.
        let systemd = Systemd::from_env(config.exits_process);
        let upgrade = Upgrade::new(config.exits_process, config.upgrade_command.clone());
        Arc::new_cyclic(|runtime| Runtime {
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
    ) -> Arc<Runtime> {
        let mut config = Config::default();
        config.for_test();
        let shared = Runtime::new(config, public, root, turns);
        let gone = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current_thread runtime needs no thread and no I/O driver");
        shared.set_tokio(gone.handle().clone());
        drop(gone);
        shared.start_shutdown(reason.unwrap_or(Reason::Requested));
        shared.shutdown.root.announce();
        shared
    }

    /// The options this runtime runs with.
    #[inline]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The store of every live piece of tracked work.
    #[inline]
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The trigger, the root scope and its hooks.
    #[inline]
    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// What the report has logged so far, and where its lines go.
    #[inline]
    pub(crate) fn reporter(&self) -> &Reporter {
        &self.report
    }

    /// The watchdog's state: the deadline it enforces, and what it defers to the reporter.
    #[inline]
    pub(crate) fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// The notifier of the service manager, if one is listening.
    #[inline]
    pub(crate) fn systemd(&self) -> &Systemd {
        &self.systemd
    }

    /// A restart without downtime in progress, if any.
    #[cfg_attr(not(unix), allow(dead_code))]
    #[inline]
    pub(crate) fn upgrade(&self) -> &Upgrade {
        &self.upgrade
    }

    /// The handle's state, for `Handle` to downcast.
    #[inline]
    pub(crate) fn public(&self) -> &Public {
        &self.public
    }

    /// What a scope's turn does.
    #[inline]
    pub(crate) fn turns(&self) -> &Turns {
        &self.turns
    }

    pub(crate) fn set_tokio(&self, handle: tokio::runtime::Handle) {
        let _ = self.tokio.set(handle);
    }

    #[inline]
    pub(crate) fn tokio(&self) -> &tokio::runtime::Handle {
        // `run` sets the handle before it polls anything, and only polled code reaches here.
        self.tokio
            .get()
            .expect("graceful: runtime handle used before the runtime was built")
    }

    /// Asks for one task dump, for a report about to name `items` (the chains of the first of
    /// them are resolved), whose thread will wait for it. `None` where this build cannot dump,
    /// before the runtime is built, and on a paused clock: a dump's bounds are real time, which
    /// a test's paused clock would skip past.
    pub(crate) fn take_dump(&self, items: &[TaskInfo]) -> Option<taskdump::Pending> {
        self.dump_of(|| items.iter().filter_map(|item| item.task_id).collect())
    }

    fn dump_of(&self, wanted: impl FnOnce() -> Vec<tokio::task::Id>) -> Option<taskdump::Pending> {
        if self.config.start_paused {
            return None;
        }
        taskdump::start(self.tokio.get()?, wanted)
    }

    /// How long before a deadline the abort's dump is asked for, so that it has been taken by
    /// then and the abort is not late: zero where this build cannot dump.
    pub(crate) fn dump_lead(&self) -> Duration {
        match (taskdump::BUILT, self.tokio.get()) {
            (true, Some(runtime)) => taskdump::bound(runtime),
            _ => Duration::ZERO,
        }
    }

    /// The dump for the abort at a deadline, asked for `dump_lead` before it: of the work of
    /// `kinds` then live in the groups `which` picks.
    pub(crate) fn dump_ahead(
        &self,
        kinds: &[TaskKind],
        which: Which<'_>,
    ) -> Option<taskdump::Pending> {
        self.dump_of(|| self.registry.task_ids(kinds, which, taskdump::TASKS))
    }

    /// At the deadline: the dump, if it has been taken (else the report says it could not be).
    pub(crate) async fn dumped(dump: Option<taskdump::Pending>) -> Option<taskdump::Pending> {
        let dump = dump?;
        match dump.dumped().await {
            Ok(()) => Some(dump),
            Err(missed) => {
                report::no_chains(missed);
                None
            }
        }
    }

    /// Gives what the abort named the chains of `dump` (`dump_before_abort`'s), once resolved.
    pub(crate) async fn fill_chains(dump: Option<taskdump::Pending>, aborted: &mut [TaskInfo]) {
        let Some(dump) = dump else {
            return;
        };
        match dump.resolved().await {
            Ok(chains) => chains.fill(aborted),
            Err(missed) => report::no_chains(missed),
        }
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
            self.escalate(&info, isolating, before);
        }
    }

    /// A supervisor gave up restarting its service in `scope` (it has reported why, after
    /// `since`): the nearest isolated scope shuts down, or the program fails.
    pub(crate) fn supervisor_gave_up(
        &self,
        info: &TaskInfo,
        scope: &Arc<ScopeInner>,
        since: report::LogMark,
    ) {
        self.escalate(info, scope.isolating(), since);
    }

    /// A failure stops `isolating`'s subtree, its report covering the log from `since`, or, if
    /// the failing work is in no isolated scope, the program with the status 1.
    fn escalate(
        &self,
        info: &TaskInfo,
        isolating: Option<Arc<ScopeInner>>,
        since: report::LogMark,
    ) {
        if let Some(scope) = isolating {
            scope.begin_turn(Some(since));
            return;
        }
        self.shutdown.trigger.set_failed();
        self.start_shutdown(Reason::Failed {
            task: info.name.clone(),
        });
    }

    /// The new process of an upgrade is ready: the service manager is told it is the main
    /// process now, and this one shuts down.
    #[cfg(unix)]
    pub(crate) fn hand_over(&self, pid: u32) {
        self.systemd.hand_over(pid);
        self.start_shutdown(Reason::Upgraded);
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
