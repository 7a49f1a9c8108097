//! The blocking kind: jobs on tokio's blocking pool, told to stop through a [`StopFlag`], joined up
//! to the deadline and then abandoned (a thread cannot be killed).

use std::borrow::Cow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::context;
use crate::registry::Label;
use crate::runtime::Runtime;
use crate::scope::tree::ScopeInner;
use crate::stop_flag::StopFlag;
use crate::task::TaskKind;
use crate::tracked::Slot;

/// Runs a blocking job on the blocking pool; the shutdown raises its [`StopFlag`] and waits up to
/// the deadline.
///
/// The job is tracked by name. A job still running at the deadline is **abandoned** (a thread
/// cannot be killed) and named in the report.
///
/// This is what keeps a `spawn_blocking` job that never returns (a stdin read, a DNS lookup, a
/// long computation) from hanging the exit the way it hangs `#[tokio::main]`. A job that finishes
/// after the runtime is gone is simply let go: it may send on closed channels or call this
/// crate's functions (they answer as after a shutdown) without a panic or a line of output.
///
/// # Examples
///
/// ```
/// # use graceful_runtime as graceful;
/// graceful::Builder::new().signals([]).run(async {
///     let sum = graceful::spawn_blocking("sum", |_stop| (1..=10u64).sum::<u64>())
///         .await
///         .unwrap();
///     assert_eq!(sum, 55);
/// });
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
#[track_caller]
pub fn spawn_blocking<F, R>(name: impl Into<Cow<'static, str>>, job: F) -> JoinHandle<R>
where
    F: FnOnce(StopFlag) -> R + Send + 'static,
    R: Send + 'static,
{
    let location = Location::caller();
    let shared = context::expect("graceful::spawn_blocking");
    let scope = crate::scope::tree::current();
    spawn_blocking_in(&shared, scope.as_ref(), name.into(), location, job)
}

/// A blocking job in `scope` (the root for `None`): its stop flag is the scope's, and it runs
/// with the scope as its current scope.
pub(crate) fn spawn_blocking_in<F, R>(
    shared: &Runtime,
    scope: Option<&Arc<ScopeInner>>,
    name: Cow<'static, str>,
    location: &'static Location<'static>,
    job: F,
) -> JoinHandle<R>
where
    F: FnOnce(StopFlag) -> R + Send + 'static,
    R: Send + 'static,
{
    let scope = scope.filter(|s| !s.is_root()).cloned();
    let label = Label {
        name: Some(name),
        group: scope.as_ref().map(|s| s.path.clone()),
        ..Label::default()
    };
    let stop = match &scope {
        Some(scope) => scope.stop.clone(),
        None => shared.shutdown().root.stop.clone(),
    };
    let slot = Slot::insert_in(shared, TaskKind::Blocking, label, location, scope);
    shared.tokio().spawn_blocking(move || {
        // Dropped when the job ends, even by unwinding, or unrun when the pool shuts down first:
        // the entry first, then the scope's count.
        let slot = slot;
        let _entered = slot.enter();
        match catch_unwind(AssertUnwindSafe(|| job(stop))) {
            Ok(value) => value,
            Err(payload) => {
                slot.panicked();
                resume_unwind(payload)
            }
        }
    })
}
