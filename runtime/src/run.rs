//! One run: start our threads, build the tokio runtime, drive `main` and the shutdown sequence,
//! shut tokio down within what is left of the grace, decide the status. What `Builder::run` does
//! once its settings are checked.

use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Flavor};
use crate::context;
use crate::exit::{self, Exit};
use crate::handle;
use crate::reason::Reason;
use crate::report::{self, Report};
use crate::runtime::Runtime;
use crate::scope;
use crate::shutdown::sequence::{self, MainFuture, MainOutcome};
use crate::signals;
use crate::task::TaskInfo;
use crate::watchdog;

/// Runs `future` as `main` under `config`, with `public` as its handle's state: everything
/// between the start of our threads and the status.
pub(crate) fn run(
    config: Config,
    public: Arc<handle::Inner>,
    future: MainFuture<'_>,
    location: &'static Location<'static>,
) -> (Exit, Report) {
    // Before any thread of ours exists: the given descriptors become close-on-exec at once.
    crate::inherited::take_given();
    let shared = Runtime::new(
        config,
        public.clone(),
        public.root(),
        scope::partial::turns(),
    );
    let end_early = || public.end(None);
    // Our own threads first: without them no exit is bounded, so a program that cannot have
    // them does not start, and leaves no signal handler acting for it.
    let listener = match signals::listen(&shared) {
        Ok(listener) => listener,
        Err(err) => {
            report::stderr_line(format_args!("cannot capture signals: {err}"));
            end_early();
            return (Exit::from(1), Report::default());
        }
    };
    let watchdog = match watchdog::start(&shared) {
        Ok(watchdog) => watchdog,
        Err(err) => {
            report::stderr_line(format_args!("cannot start the watchdog thread: {err}"));
            if let Some(listener) = listener {
                listener.close();
            }
            end_early();
            return (Exit::from(1), Report::default());
        }
    };
    let runtime = match build_runtime(&shared) {
        Ok(runtime) => runtime,
        Err(err) => {
            report::stderr_line(format_args!("cannot build the tokio runtime: {err}"));
            if let Some(listener) = listener {
                listener.close();
            }
            shared.watchdog().disarm();
            let _ = watchdog.join();
            end_early();
            return (Exit::from(1), Report::default());
        }
    };
    shared.set_tokio(runtime.handle().clone());
    let enter = context::enter(shared.clone());
    match public.bind(&shared) {
        Some(Some(code)) => shared.request_with_code(code),
        Some(None) => {
            shared.start_shutdown(Reason::Requested);
        }
        None => {}
    }
    shared.systemd().start_pings(runtime.handle());

    // A panic unwinding out of `block_on` would drop the runtime, which waits forever for
    // blocking work: catch it so the bounded shutdown below still happens.
    let ended = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(sequence::drive(&shared, future, location))
    }))
    .unwrap_or_else(|_| {
        shared.shutdown().trigger.set_panicked();
        sequence::Ended {
            main: MainOutcome::Panicked,
            report: Report {
                reason: shared
                    .shutdown()
                    .trigger
                    .started()
                    .map(|s| s.reason.clone()),
                panicked: vec![TaskInfo::main(location)],
                ..Report::default()
            },
        }
    });

    // Step 6's end: untracked blocking work (tokio's own fs, stdin, DNS) gets what is left.
    let left = shared.shutdown().trigger.time_left(shared.config().grace);
    runtime.shutdown_timeout(left.max(RUNTIME_SHUTDOWN_FLOOR));
    if let Some(listener) = listener {
        listener.close();
    }
    let trigger = &shared.shutdown().trigger;
    let status = exit::decide(&exit::Ending {
        panicked: trigger.has_panicked() || matches!(ended.main, MainOutcome::Panicked),
        signal: trigger.signal(),
        signal_exit_code: shared.config().signal_exit_code,
        failed: trigger.has_failed(),
        code: trigger.code(),
        upgraded: trigger
            .started()
            .is_some_and(|started| started.reason == Reason::Upgraded),
        main: match ended.main {
            MainOutcome::Returned(code) => Some(code),
            _ => None,
        },
        clean: ended.report.finished_in_time(),
    });
    shared.watchdog().disarm();
    let _ = watchdog.join();
    drop(enter);
    public.end(
        shared
            .shutdown()
            .trigger
            .started()
            .map(|s| (s.reason.clone(), s.deadline)),
    );
    (status, ended.report)
}

/// Even past the deadline, tasks aborted at it get this long to run their `Drop`s.
const RUNTIME_SHUTDOWN_FLOOR: Duration = Duration::from_millis(100);

fn build_runtime(shared: &Arc<Runtime>) -> std::io::Result<tokio::runtime::Runtime> {
    let config = shared.config();
    let mut builder = match config.flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all();
    if let Some(n) = config.worker_threads {
        builder.worker_threads(n);
    }
    if let Some(n) = config.blocking_threads {
        builder.max_blocking_threads(n);
    }
    // Weak: the runtime's own callbacks must not keep its `Runtime` (which holds its handle) alive.
    let weak = Arc::downgrade(shared);
    builder.on_thread_start(move || context::set_for_thread(weak.upgrade()));
    builder.on_thread_stop(|| context::set_for_thread(None));
    crate::taskdump::watch_polls(&mut builder);
    #[cfg(feature = "test-util")]
    if config.start_paused {
        builder.start_paused(true);
    }
    builder.build()
}
