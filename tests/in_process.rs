//! `Builder::run` inside the test process (no signals captured, none sent): settings, runtime
//! independence, and the behaviour outside a runtime.

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn builder() -> graceful::Builder {
    graceful::Builder::new().signals([])
}

/// Counts its drops: a task's future holding one shows it was dropped exactly once.
struct Count(Arc<AtomicUsize>);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn blocking_threads_caps_the_pool() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let code = builder().blocking_threads(2).run(async move {
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let (running, most) = (r.clone(), m.clone());
                graceful::spawn_blocking("job", move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap();
        }
    });
    assert_eq!(code.code(), 0);
    // Six 30 ms jobs queued at once: only the cap keeps them from running side by side.
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[test]
fn acting_outside_a_runtime_panics_with_a_clear_message() {
    let message = |f: fn()| {
        let payload = catch_unwind(f).unwrap_err();
        payload.downcast_ref::<String>().cloned().unwrap()
    };
    assert_eq!(
        message(|| drop(graceful::spawn(async {}))),
        "graceful::spawn called outside #[graceful::main] or graceful::Builder::run"
    );
    assert!(message(graceful::shutdown).starts_with("graceful::shutdown called outside"));
    assert!(message(|| drop(graceful::token())).starts_with("graceful::token called outside"));
    assert!(message(|| graceful::on_shutdown(async {})).starts_with("graceful::on_shutdown called"));
}

#[test]
fn querying_outside_a_runtime_gives_neutral_answers() {
    assert!(!graceful::is_shutting_down());
    assert_eq!(graceful::reason(), None);
    assert_eq!(graceful::deadline(), None);
    assert!(graceful::tasks().is_empty());
}

#[test]
fn runtimes_in_parallel_have_their_own_registries_and_shutdowns() {
    let both_started = Arc::new(Barrier::new(2));
    let first_stopped = Arc::new(Barrier::new(2));
    let (b1, s1) = (both_started.clone(), first_stopped.clone());
    let first = std::thread::spawn(move || {
        let code = builder().run(async move {
            graceful::spawn_service("first", graceful::shutdown_requested());
            tokio::task::block_in_place(|| b1.wait());
            graceful::shutdown_with_code(4);
        });
        // Let the other runtime look around only once this one has shut down completely.
        s1.wait();
        code
    });
    let code = builder().run(async move {
        graceful::spawn_service("second", graceful::shutdown_requested());
        tokio::task::block_in_place(|| both_started.wait());
        tokio::task::block_in_place(|| first_stopped.wait());
        let names: Vec<_> = graceful::tasks().into_iter().map(|t| t.name).collect();
        assert!(names.contains(&"second".into()) && !names.contains(&"first".into()));
        assert!(!graceful::is_shutting_down());
    });
    assert_eq!(first.join().unwrap().code(), 4);
    assert_eq!(code.code(), 0);
}

#[test]
fn run_returns_main_value_and_hooks_see_the_reason() {
    let reason = Arc::new(std::sync::Mutex::new(None));
    let seen = reason.clone();
    let code = builder().run(async move {
        graceful::on_shutdown(async move {
            *seen.lock().unwrap() = graceful::reason();
        });
        Err::<(), _>("bad input")
    });
    assert_eq!(code.code(), 1);
    assert_eq!(*reason.lock().unwrap(), Some(graceful::Reason::MainFailed));
}

#[test]
fn drain_delay_keeps_tasks_alive_while_is_shutting_down_is_already_true() {
    let code = builder()
        .drain_delay(Duration::from_millis(300))
        .run(async {
            let task = graceful::spawn(std::future::pending::<()>());
            graceful::shutdown();
            assert!(graceful::is_shutting_down());
            // Inside the delay nothing is cancelled and nobody is told to stop yet.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!task.is_finished());
            assert!(!graceful::token().is_cancelled());
            graceful::shutdown_requested().await;
            assert!(task.await.unwrap_err().is_cancelled());
        });
    assert_eq!(code.code(), 0);
}

/// Every kind of spawn made while the shutdown runs behaves as its docs say.
#[test]
fn spawns_during_the_shutdown_behave_per_kind() {
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct Seen {
        task_ran: AtomicBool,
        service_ran: AtomicBool,
        protected_ran: AtomicBool,
        job_saw_flag: AtomicBool,
        late_hook_ran: AtomicBool,
        hook_spawned_service_ran: AtomicBool,
        hook_spawned_task_ran: AtomicBool,
    }

    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let code = builder().run(async move {
        // Dropped at the cancel step: from then on a `spawn` never runs. (Waking at the announce
        // instead would race the sequence's step from the announce to the cancel.)
        struct SaysWhenDropped(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for SaysWhenDropped {
            fn drop(&mut self) {
                let _ = self.0.take().map(|tx| tx.send(()));
            }
        }
        let (dropped, cancel_step) = tokio::sync::oneshot::channel();
        let guard = SaysWhenDropped(Some(dropped));
        graceful::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        let during_drain = s.clone();
        graceful::spawn_service("spawner", async move {
            let _ = cancel_step.await;
            let s = during_drain;
            let (a, b, c, d, e) = (s.clone(), s.clone(), s.clone(), s.clone(), s.clone());
            graceful::spawn(async move { a.task_ran.store(true, Ordering::SeqCst) });
            graceful::spawn_service("late", async move {
                b.service_ran.store(true, Ordering::SeqCst)
            });
            graceful::shutdown_waits_for(
                async move { c.protected_ran.store(true, Ordering::SeqCst) },
            )
            .await;
            graceful::spawn_blocking("late-job", move |stop| {
                d.job_saw_flag.store(stop.is_raised(), Ordering::SeqCst)
            });
            graceful::on_shutdown(async move {
                e.late_hook_ran.store(true, Ordering::SeqCst);
                // From a hook: a task is cancelled before it runs; a service runs.
                let (f, g) = (s.clone(), s.clone());
                graceful::spawn(
                    async move { f.hook_spawned_task_ran.store(true, Ordering::SeqCst) },
                );
                graceful::spawn_service("from-hook", async move {
                    g.hook_spawned_service_ran.store(true, Ordering::SeqCst)
                });
            });
        });
    });
    assert_eq!(code.code(), 0);
    let get = |flag: &AtomicBool| flag.load(Ordering::SeqCst);
    assert!(
        !get(&seen.task_ran),
        "a spawn after the start is cancelled before its first poll"
    );
    assert!(get(&seen.service_ran), "a late service is drained");
    assert!(get(&seen.protected_ran), "protected work is waited for");
    assert!(
        get(&seen.job_saw_flag),
        "a late blocking job starts with its flag raised"
    );
    assert!(
        get(&seen.late_hook_ran),
        "a hook registered during the drain runs"
    );
    assert!(!get(&seen.hook_spawned_task_ran));
    assert!(get(&seen.hook_spawned_service_ran));
}

/// 8 spawners x 100k tasks racing a shutdown; every task is accounted for.
#[test]
fn eight_spawners_racing_a_shutdown_lose_no_task() {
    const SPAWNERS: usize = 8;
    const EACH: usize = 100_000;

    let spawned = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (sp, fin, dr) = (spawned.clone(), finished.clone(), dropped.clone());
    let left_at_hook = Arc::new(AtomicUsize::new(usize::MAX));
    let left = left_at_hook.clone();
    let code = builder()
        .worker_threads(2)
        .grace(Duration::from_secs(20))
        .run(async move {
            graceful::on_shutdown(async move {
                let tasks = graceful::tasks()
                    .iter()
                    .filter(|t| t.kind == graceful::TaskKind::Cancellable)
                    .count();
                left.store(tasks, Ordering::SeqCst);
            });
            for spawner in 0..SPAWNERS {
                let (sp, fin, dr) = (sp.clone(), fin.clone(), dr.clone());
                graceful::spawn_service("spawner", async move {
                    for i in 0..EACH {
                        let (fin, guard) = (fin.clone(), Count(dr.clone()));
                        graceful::spawn(async move {
                            let _guard = guard;
                            tokio::task::yield_now().await;
                            fin.fetch_add(1, Ordering::Relaxed);
                        });
                        sp.fetch_add(1, Ordering::Relaxed);
                        if spawner == 0 && i == EACH / 2 {
                            graceful::shutdown();
                        }
                        if i % 1024 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
        });
    assert_eq!(code.code(), 0);
    let spawned = spawned.load(Ordering::SeqCst);
    assert_eq!(spawned, SPAWNERS * EACH);
    // Each future dropped exactly once: by completion, or by the cancellation.
    assert_eq!(dropped.load(Ordering::SeqCst), spawned);
    let finished = finished.load(Ordering::SeqCst);
    assert!(
        finished < spawned,
        "the shutdown came mid-way: {finished} of {spawned}"
    );
    assert_eq!(
        left_at_hook.load(Ordering::SeqCst),
        0,
        "the cancel step waited for every task"
    );
}

/// More spawning threads than the registry has shards (32): threads that share a shard race for
/// its spare key and its lock. Every live task must be listed exactly once, and every one must be
/// cancelled and dropped by the shutdown.
#[test]
fn forty_threads_sharing_shards_list_and_cancel_every_task_once() {
    const THREADS: usize = 40;
    const EACH: usize = 2_000;

    let dropped = Arc::new(AtomicUsize::new(0));
    let dr = dropped.clone();
    let listed = Arc::new(AtomicUsize::new(0));
    let li = listed.clone();
    let code = builder().grace(Duration::from_secs(10)).run(async move {
        let barrier = Arc::new(Barrier::new(THREADS));
        let spawners: Vec<_> = (0..THREADS)
            .map(|_| {
                let (barrier, dr) = (barrier.clone(), dr.clone());
                graceful::spawn_blocking("spawner", move |_| {
                    barrier.wait();
                    for _ in 0..EACH {
                        let guard = Count(dr.clone());
                        graceful::spawn(async move {
                            let _guard = guard;
                            std::future::pending::<()>().await
                        });
                    }
                })
            })
            .collect();
        for spawner in spawners {
            spawner.await.unwrap();
        }
        let tasks = graceful::tasks();
        let count = tasks
            .iter()
            .filter(|t| t.kind == graceful::TaskKind::Cancellable)
            .count();
        li.store(count, Ordering::SeqCst);
        graceful::shutdown();
    });
    assert_eq!(code.code(), 0);
    assert_eq!(listed.load(Ordering::SeqCst), THREADS * EACH);
    assert_eq!(dropped.load(Ordering::SeqCst), THREADS * EACH);
}

#[test]
fn the_report_names_what_did_not_end_well_and_the_status_is_not_0() {
    let (code, report) = builder()
        .grace(Duration::from_millis(300))
        .run_with_report(async {
            graceful::on_shutdown(async { unreachable!("the drain never finished") });
            graceful::spawn_service("stuck", std::future::pending::<()>());
            let loader = graceful::spawn_service("loader", async { Err::<(), _>("no table") });
            loader.await.unwrap().unwrap_err();
            let job = graceful::spawn_blocking("legacy", |_stop| {
                std::thread::sleep(Duration::from_secs(2))
            });
            drop(job);
        });
    assert_eq!(code.code(), 1, "work was cut at the deadline");
    assert_eq!(report.reason, Some(graceful::Reason::MainReturned));
    assert!(report.elapsed >= Duration::from_millis(300), "{report:?}");
    let names = |items: &[graceful::TaskInfo]| -> Vec<String> {
        items.iter().map(|t| t.name.to_string()).collect()
    };
    assert_eq!(names(&report.aborted), ["stuck"]);
    assert_eq!(names(&report.abandoned), ["legacy"]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].task.name, "loader");
    assert_eq!(report.failed[0].error, "\"no table\"");
    assert_eq!(report.hooks_not_run.len(), 1);
    assert_eq!(report.hooks_not_run[0].kind, graceful::TaskKind::Hook);
    assert!(report.panicked.is_empty());
    assert!(!report.is_clean());
}

#[test]
fn an_upgrade_is_refused_with_its_reason_where_it_cannot_run() {
    let refused = graceful::upgrade().unwrap_err();
    assert!(matches!(refused, graceful::UpgradeError::NotTheProgram));
    assert_eq!(
        refused.to_string(),
        "an upgrade needs the program's own run (#[graceful::main] or Builder::run)"
    );
    let code = builder().run(async {
        assert!(!graceful::is_upgrade(), "started by the test harness");
        #[cfg(windows)]
        assert!(matches!(
            graceful::upgrade(),
            Err(graceful::UpgradeError::Unsupported)
        ));
        graceful::shutdown();
        let refused = graceful::upgrade().unwrap_err();
        #[cfg(unix)]
        assert!(
            matches!(refused, graceful::UpgradeError::ShuttingDown),
            "{refused}"
        );
        #[cfg(windows)]
        assert_eq!(
            refused.to_string(),
            "restart without downtime is supported on Unix only"
        );
    });
    assert_eq!(code.code(), 0);
}

/// `#[graceful::test]` is not a program that can replace itself.
#[graceful::test]
async fn an_upgrade_is_refused_in_a_test() {
    assert!(matches!(
        graceful::upgrade(),
        Err(graceful::UpgradeError::NotTheProgram)
    ));
}
