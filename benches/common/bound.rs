//! The least a registry kept outside tokio can do per task and still abort it: one lock to add
//! the task's abort handle to a slab, and one to remove it when the future is dropped. Less than
//! graceful can afford: no start time, location or kind, one global store, and the lock held
//! across tokio's spawn, which a real registry must not do (tokio drops the future inside `spawn`
//! when the runtime is closing, and a `Drop` that spawns or lists tasks would deadlock). tokio
//! offers no other way to abort a task than its handle, so no design outside it goes below this.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use slab::Slab;
use tokio::task::{AbortHandle, JoinHandle};

static STORE: Mutex<Slab<AbortHandle>> = Mutex::new(Slab::new());

struct Tracked<F> {
    future: F,
    key: usize,
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is never moved out of the pinned wrapper.
        unsafe { self.map_unchecked_mut(|this| &mut this.future) }.poll(cx)
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        let _ = STORE.lock().unwrap().try_remove(self.key);
    }
}

pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut store = STORE.lock().unwrap();
    let key = store.vacant_key();
    let handle = tokio::spawn(Tracked { future, key });
    store.insert(handle.abort_handle());
    handle
}
