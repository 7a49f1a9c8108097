use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::*;

/// A runtime whose tasks give the tests real abort handles.
fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn insert(registry: &Registry, kind: TaskKind) -> At {
    registry.insert(kind, Label::default(), Location::caller())
}

/// Fills reserved work in as a spawn does, for work that has not panicked.
fn fill(
    registry: &Registry,
    at: At,
    kind: TaskKind,
    name: Option<&'static str>,
    abort: AbortHandle,
) {
    let label = Label {
        name: name.map(Cow::Borrowed),
        ..Label::default()
    };
    let panicked = registry.fill_labelled(at, kind, label, Location::caller(), abort);
    assert!(panicked.is_none(), "no panic to report");
}

#[test]
fn insert_snapshot_and_release() {
    let registry = Registry::new();
    let at = registry.insert(
        TaskKind::Service,
        Label::named("flusher".into()),
        Location::caller(),
    );
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].name, "flusher");
    assert_eq!(snapshot[0].kind, TaskKind::Service);
    assert_eq!(registry.count(&[TaskKind::Service]), 1);
    registry.release(at);
    assert!(registry.snapshot().is_empty());
    assert_eq!(registry.count(&[TaskKind::Service]), 0);
}

#[test]
fn live_registries_never_share_an_id() {
    let a = Registry::new();
    let b = Registry::new();
    assert_ne!(a.id(), b.id());
    let freed = b.id();
    drop(b);
    // An id comes back only once its registry is gone, so it cannot name two live ones.
    let c = Registry::new();
    assert_ne!(c.id(), a.id());
    let _ = freed;
}

#[test]
fn work_ending_before_its_entry_is_filled_is_removed_by_the_filling() {
    let registry = Registry::new();
    let at = registry.reserve();
    registry.release(at);
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 0);
    // The key stays taken until the spawner fills it in, or a new entry could be mistaken
    // for the ended one.
    let other = insert(&registry, TaskKind::Service);
    assert!(other != at);
    let rt = test_runtime();
    let handle = rt.spawn(async {});
    fill(
        &registry,
        at,
        TaskKind::Cancellable,
        None,
        handle.abort_handle(),
    );
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 0);
    let listed = registry.snapshot();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, TaskKind::Service);
}

#[test]
fn a_panic_before_the_fill_is_described_by_the_fill_with_where_it_was_spawned() {
    let registry = Registry::new();
    let rt = test_runtime();
    let at = registry.reserve();
    assert!(registry.mark_panicked(at).is_none(), "nothing to say yet");
    registry.release(at);
    let handle = rt.spawn(async {});
    let here = Location::caller();
    let info = registry
        .fill(
            at,
            TaskKind::Service,
            "svc".into(),
            here,
            handle.abort_handle(),
        )
        .expect("the fill describes the panic");
    assert_eq!((info.name.as_ref(), info.kind), ("svc", TaskKind::Service));
    assert_eq!(info.location, here);
    assert_eq!(registry.count(&[TaskKind::Service]), 0);
}

#[test]
fn a_fill_leaves_a_key_spare_so_the_next_reserve_takes_no_lock() {
    let registry = Registry::new();
    let rt = test_runtime();
    let first = registry.reserve();
    let handle = rt.spawn(async {});
    fill(
        &registry,
        first,
        TaskKind::Cancellable,
        None,
        handle.abort_handle(),
    );
    // Holding the lock proves the reserve does not take it: it would deadlock.
    let (spare, guard) = registry.shards.spare_and_lock(first);
    let spare = spare.expect("the fill left a spare key");
    let second = registry.reserve();
    drop(guard);
    assert_eq!(Shards::key_of(second), spare);
    // Reserved but not filled in: neither counted nor listed.
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 1);
    assert_eq!(registry.snapshot().len(), 1);
}

#[test]
fn zero_crossing_notifies_only_while_watched() {
    let registry = Registry::new();
    let at = insert(&registry, TaskKind::Cancellable);
    let mut waiter = Waiter::new(registry.changed());
    registry.release(at);
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 0);
    assert!(!waiter.is_ready());

    registry.watch();
    let one = insert(&registry, TaskKind::Cancellable);
    let other = insert(&registry, TaskKind::Cancellable);
    registry.release(one);
    assert!(
        !waiter.is_ready(),
        "one task left: the count is not zero yet"
    );
    registry.release(other);
    assert!(waiter.is_ready());
}

/// Runs `f` on a thread whose shard is not `shard`: work ending away from its spawner.
fn away_from<R: Send>(shard: usize, f: impl Fn() -> R + Sync) -> R {
    loop {
        // Each new thread takes the next shard; one in a row of two differs from `shard`.
        let done = std::thread::scope(|scope| {
            scope
                .spawn(|| (shards::this_thread_shard() != shard).then(&f))
                .join()
                .unwrap()
        });
        if let Some(result) = done {
            return result;
        }
    }
}

#[test]
fn work_ending_on_its_spawners_thread_leaves_at_once() {
    let registry = Registry::new();
    let at = insert(&registry, TaskKind::Cancellable);
    registry.release(at);
    assert_eq!(registry.shards.stored(), 0, "no grave, no batch");
}

#[test]
fn released_keys_wait_in_their_grave_until_a_batch_or_a_count() {
    let registry = Registry::new();
    let keys: Vec<At> = (0..shards::BATCH)
        .map(|_| insert(&registry, TaskKind::Cancellable))
        .collect();
    let shard = shards::Shards::shard_of(keys[0]);
    away_from(shard, || {
        for &at in &keys[..shards::BATCH - 1] {
            registry.release(at);
        }
        assert_eq!(
            registry.shards.stored(),
            shards::BATCH,
            "removals wait for a full batch"
        );
        registry.release(keys[shards::BATCH - 1]);
    });
    // The batch went back to the shard; its own spawner removes it on its next insert.
    let next = insert(&registry, TaskKind::Cancellable);
    assert_eq!(registry.shards.stored(), 1);
    away_from(shard, || registry.release(next));
    assert_eq!(registry.shards.stored(), 1);
    // Counting makes everything released so far disappear.
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 0);
    assert_eq!(registry.shards.stored(), 0);
}

/// Runs `f` on a thread away from `at`'s shard while this thread holds that shard's lock, as a
/// count, a walk or the shard's spawner does. Fails, rather than hangs, if `f` waits for it.
fn while_held<R: Send>(registry: &Registry, at: At, f: impl Fn() -> R + Sync) -> R {
    let shard = shards::Shards::shard_of(at);
    let mut held = Some(registry.shards.hold(at));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let releasing = scope.spawn(|| {
            let out = catch_unwind(AssertUnwindSafe(|| away_from(shard, &f)));
            let _ = done.send(());
            out.unwrap_or_else(|panic| resume_unwind(panic))
        });
        let waited = finished.recv_timeout(std::time::Duration::from_secs(10));
        // Let go either way, so that a release stuck on the lock ends and the scope can join.
        drop(held.take());
        let out = releasing.join().unwrap();
        assert!(
            waited.is_ok(),
            "a release waited for a shard another thread held"
        );
        out
    })
}

#[test]
fn counted_exactly_a_release_that_finds_its_shard_held_buries_and_wakes_the_count() {
    let registry = Registry::new();
    registry.watch();
    let keys: Vec<At> = (0..2)
        .map(|_| insert(&registry, TaskKind::Cancellable))
        .collect();
    let mut waiter = Waiter::new(registry.changed());
    while_held(&registry, keys[0], || registry.release(keys[0]));
    assert!(waiter.is_ready(), "a buried key wakes whoever counts");
    assert_eq!(
        registry.count(&[TaskKind::Cancellable]),
        1,
        "the count took it"
    );
    assert_eq!(registry.shards.stored(), 1);
}

#[test]
fn counted_exactly_a_grave_handing_its_keys_back_wakes_the_count() {
    let registry = Registry::new();
    registry.watch();
    let keys: Vec<At> = (0..shards::BATCH)
        .map(|_| insert(&registry, TaskKind::Cancellable))
        .collect();
    while_held(&registry, keys[0], || {
        let mut first = Waiter::new(registry.changed());
        registry.release(keys[0]);
        assert!(first.is_ready(), "the grave had no key");
        let mut batch = Waiter::new(registry.changed());
        for &at in &keys[1..shards::BATCH - 1] {
            registry.release(at);
        }
        assert!(!batch.is_ready(), "the first key's wake covers the rest");
        // The batch is full: its keys go back to their shard, out of any grave.
        registry.release(keys[shards::BATCH - 1]);
        assert!(batch.is_ready(), "the hand-back woke whoever counts");
    });
    assert_eq!(registry.count(&[TaskKind::Cancellable]), 0);
    assert_eq!(registry.shards.stored(), 0);
}

#[test]
fn a_shard_that_stops_adding_gets_its_ended_work_removed_anyway() {
    let registry = Registry::new();
    let keys: Vec<At> = (0..shards::RETURNED_MAX)
        .map(|_| insert(&registry, TaskKind::Cancellable))
        .collect();
    // Released on another thread, as tasks end on another worker; no insert follows.
    std::thread::scope(|scope| {
        scope.spawn(|| keys.iter().for_each(|&at| registry.release(at)));
    });
    assert_eq!(registry.shards.stored(), 0);
}

#[test]
fn abort_listing_aborts_the_kinds_asked_for_and_names_them() {
    let rt = test_runtime();
    let registry = Registry::new();
    let at = registry.reserve();
    let handle = rt.spawn(std::future::pending::<()>());
    fill(
        &registry,
        at,
        TaskKind::Service,
        Some("svc"),
        handle.abort_handle(),
    );
    let _blocking = registry.insert(
        TaskKind::Blocking,
        Label::named("job".into()),
        Location::caller(),
    );
    let aborted = registry.abort_listing(&[TaskKind::Service, TaskKind::Cancellable], &any);
    assert_eq!(aborted.len(), 1, "only the kinds asked for: {aborted:?}");
    assert_eq!(aborted[0].name, "svc");
    let err = rt.block_on(handle).unwrap_err();
    assert!(err.is_cancelled());
    // The entry goes when the work's owner releases it, not when it is aborted.
    assert_eq!(registry.count(&[TaskKind::Service]), 1);
    registry.release(at);
    assert_eq!(registry.count(&[TaskKind::Service]), 0);
}

/// A `Notify` waiter polled by hand, so the test drives it poll by poll.
struct Waiter<'a> {
    notified: Pin<Box<tokio::sync::futures::Notified<'a>>>,
}

impl<'a> Waiter<'a> {
    fn new(notify: &'a Notify) -> Waiter<'a> {
        let mut notified = Box::pin(notify.notified());
        notified.as_mut().enable();
        Waiter { notified }
    }

    fn is_ready(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.notified.as_mut().poll(&mut cx), Poll::Ready(()))
    }
}

#[test]
fn groups_are_counted_apart_and_picked_by_label() {
    let registry = Registry::new();
    let db: Arc<str> = Arc::from("db");
    let label = |group: &Arc<str>| Label {
        group: Some(group.clone()),
        ..Label::default()
    };
    let root = insert(&registry, TaskKind::Service);
    let grouped = registry.insert(TaskKind::Service, label(&db), Location::caller());
    assert_eq!(registry.count(&[TaskKind::Service]), 1, "ungrouped only");
    assert_eq!(registry.count_all(&[TaskKind::Service]), 2);
    let in_db = registry.snapshot_of(&|g| g.is_some_and(|g| Arc::ptr_eq(g, &db)));
    assert_eq!(in_db.len(), 1);
    assert_eq!(in_db[0].scope.as_deref(), Some("db"));
    // Another group with the same label text is another group.
    let other: Arc<str> = Arc::from("db");
    assert!(registry
        .snapshot_of(&|g| g.is_some_and(|g| Arc::ptr_eq(g, &other)))
        .is_empty());
    registry.release(grouped);
    registry.release(root);
    assert_eq!(registry.count_all(&[TaskKind::Service]), 0);
}

#[test]
fn aborting_a_slice_at_a_time_aborts_every_entry_once_and_skips_what_left_meanwhile() {
    let rt = test_runtime();
    let registry = Registry::new();
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let at = registry.reserve();
        let handle = rt.spawn(std::future::pending::<()>());
        fill(
            &registry,
            at,
            TaskKind::Cancellable,
            None,
            handle.abort_handle(),
        );
        tasks.push((at, handle));
    }
    let (first, next) = registry.abort_slice(&[TaskKind::Cancellable], &any, Position::START, 12);
    assert_eq!(first, 12);
    // Between slices: an aborted task leaves, a task not reached yet leaves, one is added.
    registry.release(tasks[0].0);
    registry.release(tasks[29].0);
    let late = registry.reserve();
    let late_handle = rt.spawn(std::future::pending::<()>());
    fill(
        &registry,
        late,
        TaskKind::Cancellable,
        None,
        late_handle.abort_handle(),
    );
    let (second, next) = registry.abort_slice(&[TaskKind::Cancellable], &any, next.unwrap(), 12);
    let (third, next) = registry.abort_slice(&[TaskKind::Cancellable], &any, next.unwrap(), 12);
    assert_eq!(next, None, "done");
    // 30 - 12 - the one that left = 17, and the late one: its key is behind the walk or ahead
    // of it, so it is aborted here or (spawned after the cancel step began) by its spawner.
    assert!(
        second + third == 17 || second + third == 18,
        "{second} + {third}"
    );
    for (at, handle) in tasks.into_iter().skip(1).take(28) {
        assert!(rt.block_on(handle).unwrap_err().is_cancelled());
        registry.release(at);
    }
}

#[test]
fn work_named_with_one_literal_at_one_call_site_shares_a_label_and_keeps_its_name() {
    let rt = test_runtime();
    let registry = Registry::new();
    let here = Location::caller();
    let fill_named = |name: Cow<'static, str>, location| {
        let handle = rt.spawn(std::future::pending::<()>());
        let at = registry.reserve();
        let panicked = registry.fill(at, TaskKind::Service, name, location, handle.abort_handle());
        assert!(panicked.is_none());
        at
    };
    let first = fill_named(Cow::Borrowed("svc"), here);
    let second = fill_named(Cow::Borrowed("svc"), here);
    assert!(
        registry.shards.same_origin(first, second),
        "one literal from one call site: one label"
    );
    let there = Location::caller();
    let elsewhere = fill_named(Cow::Borrowed("svc"), there);
    let other = fill_named(Cow::Borrowed("other"), here);
    let owned = fill_named(Cow::Owned("conn-7".to_string()), here);
    assert!(!registry.shards.same_origin(first, elsewhere));
    assert!(!registry.shards.same_origin(first, other));
    let mut names: Vec<String> = registry
        .snapshot()
        .iter()
        .map(|t| format!("{} at {}", t.name, t.location.line()))
        .collect();
    names.sort();
    let mut expected = vec![
        format!("conn-7 at {}", here.line()),
        format!("other at {}", here.line()),
        format!("svc at {}", here.line()),
        format!("svc at {}", here.line()),
        format!("svc at {}", there.line()),
    ];
    expected.sort();
    assert_eq!(names, expected);
    for at in [first, second, elsewhere, other, owned] {
        registry.release(at);
    }
    assert_eq!(registry.count(&[TaskKind::Service]), 0);
}
