//! Supervised services: restarts with backoff, the intensity limit and its escalation, and the
//! supervisor, not `stop_on_error`/`stop_on_panic`, handling its service's failures.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn builder() -> graceful::Builder {
    graceful::Builder::new().signals([])
}

fn fast() -> graceful::Restart {
    graceful::Restart::on_failure().backoff(Duration::from_millis(20), Duration::from_millis(40))
}

#[test]
fn a_failing_service_is_restarted_after_its_backoff_and_recovers() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = starts.clone();
    let (code, report) = builder().stop_on_error(true).run_with_report(async move {
        let consumer = graceful::supervise("consumer", fast(), move || {
            let mut starts = log.lock().unwrap();
            starts.push(Instant::now());
            let attempt = starts.len();
            async move {
                if attempt <= 2 {
                    return Err(format!("attempt {attempt} failed"));
                }
                graceful::shutdown_requested().await;
                Ok(())
            }
        });
        while consumer.restarts() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The running incarnation shows its restart count.
        tokio::task::yield_now().await;
        let listed = graceful::tasks()
            .into_iter()
            .find(|t| t.name == "consumer")
            .expect("the third incarnation runs");
        assert_eq!(listed.restarts, 2);
        assert!(!graceful::is_shutting_down(), "stop_on_error did not fire");
    });
    // The failures were handled by the supervisor: reported, not the program's end.
    assert_eq!(code.code(), 0);
    assert_eq!(report.reason, Some(graceful::Reason::MainReturned));
    assert_eq!(report.failed.len(), 2, "{report:?}");
    let starts = starts.lock().unwrap();
    assert_eq!(starts.len(), 3);
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(20),
            "restarted before its backoff"
        );
    }
}

#[test]
fn reaching_the_intensity_limit_gives_up_and_stops_the_program_with_status_1() {
    let incarnations = Arc::new(AtomicU32::new(0));
    let counter = incarnations.clone();
    let (code, report) = builder().run_with_report(async move {
        let policy = fast().limit(2, Duration::from_secs(60));
        graceful::supervise("flaky", policy, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { panic!("flaky by design") as () }
        });
        graceful::shutdown_requested().await;
    });
    assert_eq!(code.code(), 1);
    assert_eq!(
        report.reason,
        Some(graceful::Reason::Failed {
            task: "flaky".into()
        })
    );
    // `limit(2, ..)`: three incarnations, then give up.
    assert_eq!(incarnations.load(Ordering::SeqCst), 3);
    assert_eq!(report.failed.len(), 3);
    assert!(
        report.failed[0].error.contains("flaky by design"),
        "{report:?}"
    );
}

#[test]
fn giving_up_in_an_isolated_scope_shuts_down_only_that_scope() {
    let code = builder().run(async {
        let plugin = graceful::scope("plugin").isolated();
        let supervisor = plugin.supervise(
            "broken",
            fast().limit(1, Duration::from_secs(60)),
            || async { Err::<(), _>("always") },
        );
        supervisor.stopped().await;
        plugin.finished().await;
        assert!(plugin.is_shutting_down());
        assert!(!graceful::is_shutting_down(), "the program goes on");
    });
    assert_eq!(code.code(), 0);
}

#[test]
fn a_supervised_driver_keeps_restarting_while_its_dependents_drain() {
    let restarts_seen = Arc::new(AtomicU32::new(0));
    let seen = restarts_seen.clone();
    let code = builder().run(async move {
        let db = graceful::scope("db");
        let workers = graceful::scope("workers").depends_on(&db);
        let policy = graceful::Restart::on_failure()
            .backoff(Duration::from_millis(5), Duration::from_millis(5))
            .limit(1000, Duration::from_secs(60));
        let driver = db.supervise("driver", policy, || async {
            // The connection drops every 10 ms; the supervisor reconnects.
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err::<(), _>("connection lost")
        });
        let driver2 = driver.clone();
        workers.spawn_service("writer", async move {
            graceful::shutdown_requested().await;
            let before = driver2.restarts();
            tokio::time::sleep(Duration::from_millis(200)).await;
            seen.store(driver2.restarts() - before, Ordering::SeqCst);
        });
    });
    assert_eq!(code.code(), 0);
    assert!(
        restarts_seen.load(Ordering::SeqCst) >= 3,
        "the driver was not restarted while the workers drained"
    );
}

#[test]
fn nothing_restarts_once_the_scope_turn_has_begun() {
    let incarnations = Arc::new(AtomicU32::new(0));
    let counter = incarnations.clone();
    let code = builder().run(async move {
        graceful::supervise("stopper", fast(), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                graceful::shutdown_requested().await;
                Err::<(), _>("failed while draining")
            }
        });
        tokio::task::yield_now().await;
    });
    assert_eq!(code.code(), 0);
    assert_eq!(incarnations.load(Ordering::SeqCst), 1);
}

#[test]
fn restart_never_is_an_ordinary_service() {
    let code = builder().stop_on_error(true).run(async {
        graceful::supervise("once", graceful::Restart::never(), || async {
            Err::<(), _>("no retry")
        });
        graceful::shutdown_requested().await;
    });
    assert_eq!(
        code.code(),
        1,
        "stop_on_error applies to an unsupervised failure"
    );
}
