//! A scope's shutdown hooks: futures run after its drain, one at a time, last registered first.
//! The store only; `on_shutdown` registers, a scope's turn runs them.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

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
