//! Scopes: the order of the shutdown across scopes (through real signals, where the order is
//! observable), partial shutdown, abort, isolation, dependencies and their cycles, and that
//! short-lived scopes leave nothing behind.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{fixture, SIGTERM};

fn builder() -> graceful::Builder {
    graceful::Builder::new().signals([])
}

/// Runs `main` and fails the test unless it ended well: an assertion that fails inside `main` is
/// a panic the runtime catches and turns into status 101.
fn run_ok<F: std::future::Future<Output = ()>>(main: F) {
    let code = builder().run(main);
    assert_eq!(code.code(), 0, "main failed; see its panic above");
}

/// The events of `scopes_order`, in the order they happened, without their times.
fn events(stdout: &str) -> Vec<String> {
    let mut timed: Vec<(u128, String)> = stdout
        .lines()
        .filter_map(|line| {
            let (us, what) = line.split_once(' ')?;
            Some((us.parse().ok()?, what.to_string()))
        })
        .collect();
    timed.sort();
    timed.into_iter().map(|(_, what)| what).collect()
}

fn position(events: &[String], what: &str) -> usize {
    events
        .iter()
        .position(|e| e == what)
        .unwrap_or_else(|| panic!("no {what:?} in {events:?}"))
}

#[test]
fn three_dependent_scopes_stop_in_order_after_the_root_and_before_its_hooks() {
    let out = fixture("scopes_order").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM);
    let events = events(&out.stdout);
    let at = |what| position(&events, what);
    // The root's own work first: the creator stops producing before what it created stops.
    assert!(at("root drained") < at("http announced"), "{events:?}");
    // http depends on workers, workers on db: http, then workers, then db.
    assert!(at("http drained") < at("workers announced"), "{events:?}");
    assert!(at("workers drained") < at("db announced"), "{events:?}");
    // The root's hook closes the pool after every scope that used it.
    assert!(at("db drained") < at("pool closed"), "{events:?}");
}

#[test]
fn a_driver_in_a_scope_outlives_the_root_services_that_use_it() {
    let out = fixture("scope_driver").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM)
        .assert_stdout_has("sent 100")
        .assert_stdout_has("processed 100");
}

#[test]
fn a_deadline_missed_in_a_scope_is_reported_with_the_scope_path() {
    let out = fixture("scope_stuck").signal_after("ready", SIGTERM);
    out.assert_killed_by(SIGTERM)
        .assert_exited_within(Duration::from_secs(1))
        .assert_stderr_has(&format!(
            "aborted at the deadline: service \"stuck\" in db/jobs at {}:",
            support::source("scope_stuck")
        ));
}

#[test]
fn library_code_in_a_scope_gets_the_scope_timing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let code = builder().run(async move {
        let db = graceful::scope("db");
        let log2 = log.clone();
        let (started, has_started) = tokio::sync::oneshot::channel();
        db.spawn_service("driver", async move {
            // "Library code": it knows nothing of scopes and uses the free functions.
            let helper = graceful::spawn(async { graceful::current_scope().path().to_string() });
            let path = helper.await.unwrap();
            log2.lock().unwrap().push(path);
            started.send(()).unwrap();
            graceful::shutdown_requested().await;
            log2.lock().unwrap().push(format!(
                "driver stopping, program shutting down: {}",
                graceful::handle().is_shutting_down()
            ));
        });
        graceful::spawn_service("api", async move {
            graceful::shutdown_requested().await;
            log.lock().unwrap().push("api stopping".into());
        });
        has_started.await.unwrap();
    });
    assert_eq!(code.code(), 0);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "db",
            "api stopping",
            "driver stopping, program shutting down: true"
        ]
    );
}

#[test]
fn a_partial_shutdown_leaves_the_rest_running_and_reports_its_subtree() {
    let code = builder().run(async {
        let tenant = graceful::scope("tenant");
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        tenant.scope("sync").spawn_service("pull", async move {
            graceful::shutdown_requested().await;
            flag.store(true, Ordering::SeqCst);
        });
        let other = graceful::scope("other");
        let other_stop = other.shutdown_requested();
        other.spawn_service("keeps", other_stop);
        let report = tenant.shutdown().await;
        assert!(report.is_clean(), "{report:?}");
        assert!(
            stopped.load(Ordering::SeqCst),
            "the nested scope took its turn"
        );
        assert!(!graceful::is_shutting_down());
        assert!(!other.is_shutting_down());
        assert_eq!(other.tasks().len(), 1);
        // A second call waits for the same end.
        assert!(tenant.shutdown().await.is_clean());
        // Done: work spawned into it now never runs.
        let late = tenant.spawn(async { panic!("ran after the scope's shutdown") });
        assert!(late.await.unwrap_err().is_cancelled());
    });
    assert_eq!(code.code(), 0);
}

#[test]
fn a_partial_shutdown_stops_its_dependents_first() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    run_ok(async move {
        let db = graceful::scope("db");
        let workers = graceful::scope("workers").depends_on(&db);
        for (scope, name) in [(&db, "db"), (&workers, "workers")] {
            let log = log.clone();
            let requested = scope.shutdown_requested();
            scope.spawn_service(name, async move {
                requested.await;
                log.lock().unwrap().push(name);
            });
        }
        db.shutdown().await;
        assert!(
            workers.is_shutting_down(),
            "workers depends on db: stopped first"
        );
    });
    assert_eq!(*order.lock().unwrap(), ["workers", "db"]);
}

#[test]
fn a_partial_shutdown_aborts_what_is_left_at_its_own_grace() {
    run_ok(async {
        let batch = graceful::scope("batch").grace(Duration::from_millis(100));
        batch
            .scope("inner")
            .spawn_service("stuck", std::future::pending::<()>());
        let report = batch.shutdown().await;
        assert_eq!(report.aborted.len(), 1, "{report:?}");
        assert_eq!(report.aborted[0].scope.as_deref(), Some("batch/inner"));
        assert!(!graceful::is_shutting_down());
    });
}

struct SetOnDrop(Arc<AtomicUsize>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn abort_cascades_to_nested_scopes_and_runs_their_drops() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    run_ok(async move {
        let tenant = graceful::scope("tenant");
        let mut handles = Vec::new();
        for scope in [
            tenant.clone(),
            tenant.scope("a"),
            tenant.scope("a").scope("b"),
        ] {
            let guard = SetOnDrop(counter.clone());
            handles.push(scope.spawn_service("stuck", async move {
                let _guard = guard;
                std::future::pending::<()>().await
            }));
        }
        tokio::task::yield_now().await;
        tenant.abort();
        for handle in handles {
            assert!(handle.await.unwrap_err().is_cancelled());
        }
        assert!(
            !graceful::is_shutting_down(),
            "the rest of the program goes on"
        );
    });
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}

#[test]
fn an_isolated_scope_keeps_its_panic_and_its_error_inside() {
    let (code, report) = builder()
        .stop_on_panic(true)
        .stop_on_error(true)
        .run_with_report(async {
            let plugin = graceful::scope("plugin").isolated();
            plugin.spawn(async { panic!("a plugin bug") });
            plugin.finished().await;
            assert!(plugin.is_shutting_down(), "the panic shut the scope down");
            let loader = graceful::scope("loader").isolated();
            loader.spawn_service("load", async { Err::<(), _>("no such table") });
            loader.finished().await;
            assert!(loader.is_shutting_down(), "the error shut the scope down");
            assert!(!graceful::is_shutting_down(), "the program goes on");
        });
    // Reported, but the program's status is its own.
    assert_eq!(code.code(), 0);
    assert_eq!(report.panicked.len(), 1);
    assert_eq!(report.panicked[0].scope.as_deref(), Some("plugin"));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].task.scope.as_deref(), Some("loader"));
}

#[test]
fn without_isolation_a_scoped_panic_stops_the_program() {
    let code = builder().stop_on_panic(true).run(async {
        graceful::scope("plugin").spawn(async { panic!("a plugin bug") });
        graceful::shutdown_requested().await;
    });
    assert_eq!(code.code(), 101);
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).unwrap_err();
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_dependency_cycle_panics_naming_the_cycle() {
    run_ok(async {
        let a = graceful::scope("a");
        let b = graceful::scope("b").depends_on(&a);
        let c = graceful::scope("c").depends_on(&b);
        let message = panic_message(std::panic::AssertUnwindSafe(|| {
            let _ = a.clone().depends_on(&c);
        }));
        assert_eq!(
            message,
            "graceful: `a` cannot depend on `c`: it would make a cycle \
             (`c` waits for `a`, which waits for `b`, which waits for `c`)"
        );
        let message = panic_message(std::panic::AssertUnwindSafe(|| {
            let _ = a.clone().depends_on(&a);
        }));
        assert!(message.contains("would make a cycle"), "{message}");
        let parent = graceful::scope("parent");
        let child = parent.scope("child");
        let message = panic_message(std::panic::AssertUnwindSafe(|| {
            let _ = parent.clone().depends_on(&child);
        }));
        assert!(message.contains("would make a cycle"), "{message}");
        // The other way round is allowed: the parent's own work waits for the child.
        let _ = child.depends_on(&parent);
    });
}

#[test]
fn a_child_that_its_parent_depends_on_stops_before_the_parents_own_work() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    run_ok(async move {
        let parent = graceful::scope("parent");
        let child = parent.scope("child").depends_on(&parent);
        for (scope, name) in [(&parent, "parent"), (&child, "child")] {
            let log = log.clone();
            let requested = scope.shutdown_requested();
            scope.spawn_service(name, async move {
                requested.await;
                log.lock().unwrap().push(name);
            });
        }
    });
    assert_eq!(*order.lock().unwrap(), ["child", "parent"]);
}

#[test]
fn a_spawn_into_a_scope_after_its_turn_never_runs() {
    run_ok(async {
        let jobs = graceful::scope("jobs");
        jobs.abort();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let late = jobs.spawn(async move { flag.store(true, Ordering::SeqCst) });
        assert!(late.await.unwrap_err().is_cancelled());
        assert!(!ran.load(Ordering::SeqCst));
    });
}

#[test]
fn scope_names_cannot_contain_a_slash() {
    run_ok(async {
        let message = panic_message(|| {
            let _ = graceful::scope("a/b");
        });
        assert!(message.contains("cannot contain `/`"), "{message}");
    });
}

#[graceful::test(grace = "200ms")]
#[should_panic(expected = "service \"leaky\" in db at tests/scopes.rs:")]
async fn graceful_test_fails_on_a_scoped_service_that_does_not_stop() {
    graceful::scope("db").spawn_service("leaky", std::future::pending::<()>());
}

#[test]
fn a_scope_kept_past_its_runtime_spawns_work_that_never_runs() {
    let kept = Arc::new(Mutex::new(None));
    let slot = kept.clone();
    run_ok(async move {
        *slot.lock().unwrap() = Some(graceful::scope("kept"));
    });
    let scope = kept.lock().unwrap().take().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let task = scope.spawn(async move { flag.store(true, Ordering::SeqCst) });
    let job = scope.spawn_blocking("late", |_| ());
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(other.block_on(task).unwrap_err().is_cancelled());
    assert!(other.block_on(job).is_err());
    assert!(!ran.load(Ordering::SeqCst));
}

/// A service per scope that records the scope's turn.
fn record_turn(scope: &graceful::Scope, name: &'static str, log: &Arc<Mutex<Vec<&'static str>>>) {
    let log = log.clone();
    let requested = scope.shutdown_requested();
    scope.spawn_service(name, async move {
        requested.await;
        log.lock().unwrap().push(name);
    });
}

/// Runs `build` as `main` with a long grace, and checks that the shutdown finished at once,
/// every turn taken in the order `expected` gives, with nothing aborted.
fn finishes_at_once_in_order(
    build: impl FnOnce(Arc<Mutex<Vec<&'static str>>>) + Send + 'static,
    expected: &[&str],
) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    let (code, report) = builder()
        .grace(Duration::from_secs(20))
        .run_with_report(async move { build(log) });
    assert!(report.is_clean(), "{report:?}");
    assert!(
        report.elapsed < Duration::from_secs(10),
        "the shutdown waited for its deadline: {report:?}"
    );
    assert_eq!(code.code(), 0);
    assert_eq!(*order.lock().unwrap(), expected);
}

/// A peer's sequential shutdown: `nested3` depends on its parent `root`, and the siblings are
/// ordered among themselves; `root`'s own work waits for `nested3`, which waits for `nested2`,
/// which waits for `nested1`.
#[test]
fn an_ancestor_dependency_through_siblings_finishes_at_once_in_order() {
    finishes_at_once_in_order(
        |log| {
            let root = graceful::scope("root");
            let nested1 = root.scope("nested1");
            let nested2 = root.scope("nested2");
            let nested3 = root.scope("nested3").depends_on(&root);
            let nested2 = nested2.depends_on(&nested3);
            let nested1 = nested1.depends_on(&nested2);
            record_turn(&root, "root", &log);
            record_turn(&nested1, "nested1", &log);
            record_turn(&nested2, "nested2", &log);
            record_turn(&nested3, "nested3", &log);
        },
        &["nested1", "nested2", "nested3", "root"],
    );
}

/// `a/b/c` depends on `a`, and `a/x` on `a/b/c`: a chain through three levels.
#[test]
fn a_chain_of_dependencies_through_three_levels_finishes_at_once_in_order() {
    finishes_at_once_in_order(
        |log| {
            let a = graceful::scope("a");
            let b = a.scope("b");
            let c = b.scope("c").depends_on(&a);
            let x = a.scope("x").depends_on(&c);
            record_turn(&a, "a", &log);
            record_turn(&b, "b", &log);
            record_turn(&c, "c", &log);
            record_turn(&x, "x", &log);
        },
        &["x", "c", "a", "b"],
    );
}

/// The same chain hanging from the program's root scope: `main`'s own drain waits for it.
#[test]
fn a_chain_that_the_root_waits_for_finishes_at_once_in_order() {
    finishes_at_once_in_order(
        |log| {
            let first = graceful::scope("first");
            let second = graceful::scope("second");
            let third = graceful::scope("third").depends_on(&graceful::current_scope());
            let second = second.depends_on(&third);
            let first = first.depends_on(&second);
            record_turn(&graceful::current_scope(), "main", &log);
            record_turn(&first, "first", &log);
            record_turn(&second, "second", &log);
            record_turn(&third, "third", &log);
        },
        &["first", "second", "third", "main"],
    );
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a Drop that panics");
    }
}

/// The `Drop` runs while the task is cancelled, where no scope is entered: the panic is still
/// the isolated scope's to handle, not the program's.
#[test]
fn a_panicking_drop_of_cancelled_work_in_an_isolated_scope_stays_inside_it() {
    let (code, report) = builder().stop_on_panic(true).run_with_report(async {
        let plugin = graceful::scope("plugin").isolated();
        let (started, has_started) = tokio::sync::oneshot::channel();
        plugin.spawn(async move {
            let _guard = PanicOnDrop;
            started.send(()).unwrap();
            std::future::pending::<()>().await
        });
        has_started.await.unwrap();
        let report = plugin.shutdown().await;
        assert_eq!(report.panicked.len(), 1, "{report:?}");
        assert!(!graceful::is_shutting_down(), "the program goes on");
    });
    assert_eq!(code.code(), 0);
    assert_eq!(report.panicked.len(), 1, "{report:?}");
    assert_eq!(report.panicked[0].scope.as_deref(), Some("plugin"));
}

/// A peer's example: `subsys2` is shut down while its isolated child `subsys3` panics at its
/// turn, under `stop_on_panic`. The handles are gone by then, as in a program that moved them
/// into its work.
#[test]
fn a_partial_shutdowns_report_lists_what_panicked_and_failed_in_its_subtree() {
    let code = builder().stop_on_panic(true).run(async {
        let subsys2 = graceful::scope("subsys2");
        let subsys3 = subsys2.scope("subsys3").isolated();
        let requested = subsys3.shutdown_requested();
        subsys3.spawn_service("subsys3", async move {
            requested.await;
            panic!("subsys3 fails at its turn");
        });
        let requested = subsys3.shutdown_requested();
        subsys3.spawn_service("loader", async move {
            requested.await;
            Err::<(), _>("no such table")
        });
        drop(subsys3);
        // Before this shutdown: not part of its report.
        let early = subsys2.scope("early").isolated();
        early.spawn(async { panic!("an earlier panic") });
        tokio::time::timeout(Duration::from_secs(10), early.finished())
            .await
            .expect("the early scope's work ended");
        assert!(early.shutdown().await.panicked.len() == 1);
        drop(early);
        let report = subsys2.shutdown().await;
        let panicked: Vec<_> = report.panicked.iter().map(|t| &*t.name).collect();
        assert_eq!(panicked, ["subsys3"], "{report:?}");
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].task.name, "loader");
        assert!(!graceful::is_shutting_down(), "the program goes on");
    });
    assert_eq!(code.code(), 0);
}

/// Aborted and abandoned work of a partial shutdown's subtree, past its own grace.
#[test]
fn a_partial_shutdowns_report_lists_what_it_aborted_and_abandoned() {
    run_ok(async {
        let batch = graceful::scope("batch").grace(Duration::from_millis(200));
        let inner = batch.scope("inner");
        inner.spawn_service("stuck", std::future::pending::<()>());
        let (release, released) = std::sync::mpsc::channel::<()>();
        inner.spawn_blocking("copy", move |_stop| {
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
        drop(inner);
        let report = batch.shutdown().await;
        release.send(()).unwrap();
        assert_eq!(report.aborted.len(), 1, "{report:?}");
        assert_eq!(report.aborted[0].name, "stuck");
        assert_eq!(report.abandoned.len(), 1, "{report:?}");
        assert_eq!(report.abandoned[0].name, "copy");
    });
}

/// A scope freed during its parent's turn runs its hooks as the parent's: the parent waits for
/// them, so its turn, and the program's hooks after it, stay in time.
#[test]
fn hooks_of_a_scope_freed_during_its_parents_turn_keep_the_shutdown_clean() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let log = ran.clone();
    let (code, report) = builder().run_with_report(async move {
        let http = graceful::scope("http");
        let conn = http.scope("conn");
        let conn_log = log.clone();
        conn.on_shutdown(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn_log.lock().unwrap().push("conn hook");
        });
        let requested = http.shutdown_requested();
        http.spawn_service("accept", async move {
            requested.await;
            // The connection's last handle: its scope is freed during `http`'s turn.
            drop(conn);
        });
        graceful::on_shutdown(async move { log.lock().unwrap().push("root hook") });
    });
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(code.code(), 0);
    assert_eq!(*ran.lock().unwrap(), ["conn hook", "root hook"]);
}

/// The readiness-probe question is about the program, wherever it is asked: with a drain delay,
/// a scope's turn comes long after the trigger, but `is_shutting_down()` flips at the trigger.
#[test]
fn is_shutting_down_inside_a_scope_is_true_from_the_programs_trigger() {
    let code = builder()
        .drain_delay(Duration::from_millis(300))
        .run(async {
            let jobs = graceful::scope("jobs");
            graceful::shutdown();
            let inside = jobs.spawn(async { graceful::is_shutting_down() });
            assert!(inside.await.unwrap(), "false inside the scope");
            assert!(jobs.is_shutting_down());
            assert!(!jobs.token().is_cancelled(), "its turn has not come");
        });
    assert_eq!(code.code(), 0, "see the panic above");
}

/// Polls `future` once, as an `.await` would first do.
fn poll_once<F: std::future::Future>(future: F) {
    let mut future = std::pin::pin!(future);
    let _ = future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

/// Awaiting a scope's shutdown or end from inside it would wait for itself until the deadline:
/// it panics at once, saying what to do instead.
#[test]
fn awaiting_a_scopes_own_shutdown_from_inside_it_panics_at_once() {
    run_ok(async {
        let message = panic_message(|| poll_once(graceful::current_scope().finished()));
        assert!(message.contains("would wait for itself"), "{message}");
        assert!(message.contains("graceful::shutdown()"), "{message}");
        let jobs = graceful::scope("jobs");
        let inner = jobs.clone();
        let from_inside = jobs.spawn(async move {
            panic_message(std::panic::AssertUnwindSafe(|| poll_once(inner.shutdown())))
        });
        let message = from_inside.await.unwrap();
        assert!(message.contains("scope `jobs`'s shutdown()"), "{message}");
        // From outside, the same future is fine.
        assert!(jobs.shutdown().await.is_clean());
    });
    let code = builder().run(async {
        let message = panic_message(|| poll_once(graceful::current_scope().shutdown()));
        assert!(message.contains("the root scope's shutdown()"), "{message}");
    });
    assert_eq!(code.code(), 0, "see the panic above");
}

/// `main`, in the program's shutdown, stops a child scope and waits for it: the child's turn
/// starts at once, not after `main`.
#[test]
fn main_awaiting_a_childs_shutdown_during_the_programs_finishes_at_once() {
    finishes_at_once_in_order(
        |log| {
            let child = graceful::scope("child");
            record_turn(&child, "child", &log);
            graceful::spawn_service("main's work", async move {
                graceful::shutdown_requested().await;
                let report = child.shutdown().await;
                assert!(report.is_clean(), "{report:?}");
                log.lock().unwrap().push("after the child");
            });
            graceful::shutdown();
        },
        &["child", "after the child"],
    );
}
