//! How a thread finds its runtime.
//!
//! Every free function of the crate (`spawn`, `shutdown`, ...) acts on "the runtime of the calling
//! thread". Tokio offers no stable way to attach data to a runtime, so each thread the runtime
//! starts (workers and blocking threads, through `on_thread_start`) and the thread that calls
//! `run` carry a thread-local pointer to the runtime's core, [`Runtime`], and nothing else.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::runtime::Runtime;

thread_local! {
    /// The runtime this thread acts on. It owns a count of it; [`FAST`] is what lookups read.
    static CURRENT: Current = const { Current(RefCell::new(None)) };
    /// The pointer of `CURRENT`'s `Arc`, or null. A `Cell` of a pointer has nothing to drop, so
    /// reading it needs no check of the thread-local's state: every spawn and every end of
    /// tracked work looks the runtime up, and that check was a fifth of the lookup.
    static FAST: Cell<*const Runtime> = const { Cell::new(std::ptr::null()) };
}

struct Current(RefCell<Option<Arc<Runtime>>>);

impl Current {
    /// Puts `shared` in, returning what was there, and points [`FAST`] at it.
    fn replace(&self, shared: Option<Arc<Runtime>>) -> Option<Arc<Runtime>> {
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
pub(crate) fn with<R>(f: impl FnOnce(Option<&Arc<Runtime>>) -> R) -> R {
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
pub(crate) fn expect(what: &str) -> Arc<Runtime> {
    with_expect(what, Arc::clone)
}

/// Runs `f` with the runtime of this thread, without the `Arc` clone of [`expect`]: the spawn
/// path is hot, and two spawners cloning one `Arc` contend on its counter.
#[track_caller]
#[inline]
pub(crate) fn with_expect<R>(what: &str, f: impl FnOnce(&Arc<Runtime>) -> R) -> R {
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
    previous: Option<Arc<Runtime>>,
}

pub(crate) fn enter(shared: Arc<Runtime>) -> Enter {
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
pub(crate) fn set_for_thread(shared: Option<Arc<Runtime>>) {
    let _ = CURRENT.try_with(|current| current.replace(shared));
}
