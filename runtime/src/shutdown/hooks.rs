//! Shutdown hooks: futures run after the drain (step 4), one at a time, last registered first.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use crate::context;

pub(crate) type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub(crate) struct Hook {
    pub(crate) future: HookFuture,
    pub(crate) location: &'static Location<'static>,
}

#[derive(Default)]
pub(crate) struct Hooks {
    stack: Mutex<Vec<Hook>>,
}

impl Hooks {
    pub(crate) fn push(&self, location: &'static Location<'static>, future: HookFuture) {
        self.stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Hook { future, location });
    }

    /// Every hook, last registered first.
    pub(crate) fn take_all(&self) -> Vec<Hook> {
        let mut hooks =
            std::mem::take(&mut *self.stack.lock().unwrap_or_else(PoisonError::into_inner));
        hooks.reverse();
        hooks
    }

    pub(crate) fn pop(&self) -> Option<Hook> {
        self.stack
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }
}

/// Registers a future that runs after the drain, last registered first, to close what services used.
///
/// Hooks run one at a time, once the work they could be closing things under has stopped.
///
/// Inside a [`Scope`](crate::Scope), the hook is the scope's: it runs once the scope's subtree
/// has finished in its turn, or when the scope is freed before its turn (every handle dropped, all
/// its work ended). A hook that panics is reported and the next one runs; a hook still running at the deadline is
/// aborted and the ones after it do not run.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// let order = Arc::new(Mutex::new(Vec::new()));
/// let log = order.clone();
/// graceful::Builder::new().signals([]).run(async move {
///     for name in ["A", "B", "C"] {
///         let log = log.clone();
///         graceful::on_shutdown(async move { log.lock().unwrap().push(name) });
///     }
/// });
/// assert_eq!(*order.lock().unwrap(), ["C", "B", "A"]);
/// ```
///
/// # Panics
///
/// Outside a graceful runtime.
#[track_caller]
pub fn on_shutdown<F>(hook: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let location = Location::caller();
    context::with_expect("graceful::on_shutdown", |shared| {
        let scope = crate::scope::current().unwrap_or_else(|| shared.shutdown.root.clone());
        scope.add_hook(location, Box::pin(hook));
    });
}
