use std::pin::pin;
use std::task::Waker;

use super::*;

/// A runtime's shared state, made the one of this thread, with no tokio runtime.
fn enter_for_test() -> (Arc<Runtime>, context::Enter) {
    let mut config = crate::config::Config::default();
    config.for_test();
    let shared = Runtime::new(
        config,
        Arc::new(()),
        tokio_util::sync::CancellationToken::new(),
        crate::scope::partial::turns(),
    );
    let enter = context::enter(shared.clone());
    (shared, enter)
}

fn poll<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

fn tracked<F>(shared: &Runtime, kind: TaskKind, future: F) -> Tracked<F> {
    let slot = Slot::insert_in(shared, kind, Label::default(), Location::caller(), Root);
    Tracked::new(future, slot)
}

/// A runtime whose tasks give the tests real abort handles.
fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn entry_lives_until_the_future_is_dropped() {
    let (shared, _enter) = enter_for_test();
    let registry = shared.registry();
    let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
    let mut task = Box::pin(tracked(&shared, TaskKind::Cancellable, rx));
    assert!(poll(task.as_mut()).is_pending());
    assert_eq!(registry.snapshot().len(), 1);
    tx.send(7).unwrap();
    assert_eq!(poll(task.as_mut()), Poll::Ready(Ok(7)));
    // Completion is not the end: tokio drops the future right after, and that removes it.
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 1);
    drop(task);
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 0);
}

#[test]
fn task_spawned_after_the_cancel_step_never_runs_its_body() {
    let (shared, _enter) = enter_for_test();
    shared.shutdown().root.phase.begin_cancel();
    let mut task = pin!(tracked(&shared, TaskKind::Cancellable, async {
        panic!("a task spawned after the cancel step was polled")
    }));
    assert!(poll(task.as_mut()).is_pending());
    // Services spawned during the shutdown still run: they are drained, not cancelled.
    let mut service = pin!(tracked(&shared, TaskKind::Service, async { 5 }));
    assert_eq!(poll(service.as_mut()), Poll::Ready(5));
}

#[test]
fn after_the_abort_step_no_async_work_runs_but_blocking_jobs_do() {
    let (shared, _enter) = enter_for_test();
    let phase = &shared.shutdown().root.phase;
    phase.begin_abort();
    for kind in [
        TaskKind::Cancellable,
        TaskKind::Service,
        TaskKind::Protected,
        TaskKind::Hook,
    ] {
        assert!(phase.cancels_at_once(kind), "{kind:?}");
    }
    assert!(!phase.cancels_at_once(TaskKind::Blocking));
    // The phase only moves forward.
    phase.begin_cancel();
    assert!(phase.cancels_at_once(TaskKind::Service));
}

#[test]
fn a_panic_is_logged_once_and_passed_on() {
    let (shared, _enter) = enter_for_test();
    let mut task = Box::pin(tracked(&shared, TaskKind::Cancellable, async {
        panic!("boom");
    }));
    let result = catch_unwind(AssertUnwindSafe(|| poll(task.as_mut())));
    assert!(
        result.is_err(),
        "the panic reaches tokio, which gives it to the JoinHandle"
    );
    drop(task);
    assert!(shared.registry().snapshot().is_empty());
    assert_eq!(shared.reporter().log.panics(), 1);
}

/// The fill / finish / cancel protocol of reserved work, checked in every order its steps can
/// take. Each step runs under the shard lock, so the orders of the steps are all the
/// interleavings there are.
mod interleavings {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Step {
        /// The spawner fills the entry in with the abort handle, then checks whether to abort at
        /// once.
        Fill,
        /// The task ends and drops its slot.
        Finish,
        /// The sequence's cancel step.
        Cancel,
    }

    fn orders() -> Vec<[Step; 3]> {
        use Step::*;
        vec![
            [Fill, Finish, Cancel],
            [Fill, Cancel, Finish],
            [Finish, Fill, Cancel],
            [Finish, Cancel, Fill],
            [Cancel, Fill, Finish],
            [Cancel, Finish, Fill],
        ]
    }

    #[test]
    fn every_order_removes_the_entry_and_cancels_when_cancel_comes_first() {
        let rt = test_runtime();
        for order in orders() {
            let (shared, _enter) = enter_for_test();
            let registry = shared.registry();
            let task = rt.spawn(std::future::pending::<()>());
            let at = registry.reserve();
            let mut slot = Some(Slot::new(&shared, at, TaskKind::Cancellable, Root));
            for step in order {
                match step {
                    Step::Fill => {
                        let panicked = registry.fill_unnamed(
                            at,
                            TaskKind::Cancellable,
                            Location::caller(),
                            task.abort_handle(),
                        );
                        assert!(panicked.is_none());
                        if shared
                            .shutdown()
                            .root
                            .phase
                            .cancels_at_once(TaskKind::Cancellable)
                        {
                            task.abort();
                        }
                    }
                    Step::Finish => drop(slot.take()),
                    Step::Cancel => {
                        shared.shutdown().root.phase.begin_cancel();
                        registry.abort_slice(
                            &[TaskKind::Cancellable],
                            &|group| group.is_none(),
                            crate::registry::Position::START,
                            usize::MAX,
                        );
                    }
                }
                // A snapshot at any point never shows a finished entry.
                let live = registry.snapshot().len();
                assert!(live <= 1, "{order:?}");
                if slot.is_none() {
                    assert_eq!(live, 0, "a finished task is listed: {order:?}");
                }
            }
            assert_eq!(registry.count(&[TaskKind::Cancellable]), 0, "{order:?}");
            let cancel_first = order.iter().position(|s| *s == Step::Cancel)
                < order.iter().position(|s| *s == Step::Finish);
            rt.block_on(tokio::task::yield_now());
            if cancel_first {
                assert!(
                    task.is_finished(),
                    "the task outlived the cancel step: {order:?}"
                );
            }
        }
    }
}

#[test]
fn a_slot_is_eight_bytes_and_a_scope_adds_its_pointer() {
    assert_eq!(std::mem::size_of::<Slot>(), 8);
    assert_eq!(std::mem::size_of::<Slot<Arc<ScopeInner>>>(), 16);
}

/// Work that panics on a worker before its spawner has filled its entry in is reported from the
/// spawner's thread, where another scope (here: none, the root's) is current. Its own scope must
/// still handle it: with `stop_on_panic`, the isolated scope shuts down, not the program. The
/// race is forced: the fill waits until the task has ended.
#[test]
#[cfg_attr(miri, ignore = "a multi_thread runtime; nothing unsafe is exercised")]
fn a_panic_reported_by_the_spawner_is_handled_by_the_works_own_scope() {
    let config = crate::Builder::new().stop_on_panic(true).into_config();
    let public = crate::handle::Inner::new();
    let shared = Runtime::new(
        config,
        public.clone(),
        public.root(),
        crate::scope::partial::turns(),
    );
    let _enter = context::enter(shared.clone());
    // Its worker carries the runtime, as a graceful runtime's threads do.
    let worker = shared.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(move || context::set_for_thread(Some(worker.clone())))
        .build()
        .unwrap();
    shared.set_tokio(runtime.handle().clone());
    let plugin = crate::Scope::child_of(&shared.shutdown().root, "plugin".into())
        .isolated()
        .inner;
    let location = Location::caller();
    let handle = spawn_filled::<Unchecked, _>(
        &shared,
        &plugin,
        TaskKind::Cancellable,
        async { panic!("a panic before the entry was filled") },
        |at, abort| {
            let limit = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !abort.is_finished() {
                assert!(std::time::Instant::now() < limit, "the task never ended");
                std::thread::yield_now();
            }
            let label = plugin.label_at(location);
            shared
                .registry()
                .fill_shared(at, TaskKind::Cancellable, label, abort)
        },
    );
    let joined = runtime.block_on(handle);
    assert!(joined.unwrap_err().is_panic());
    assert!(
        shared.shutdown().trigger.started().is_none(),
        "the program's shutdown started: the panic was handled by the spawner's scope"
    );
    assert!(plugin.is_claimed(), "the isolated scope was not shut down");
}
