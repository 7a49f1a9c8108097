//! `Builder::run` inside the test process (no signals captured, none sent): settings, runtime
//! independence, and the behaviour outside a runtime.

use std::panic::catch_unwind;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn builder() -> graceful::Builder {
    graceful::Builder::new().signals([])
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
    assert_eq!(code, ExitCode::SUCCESS);
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
    assert_eq!(first.join().unwrap(), ExitCode::from(4));
    assert_eq!(code, ExitCode::SUCCESS);
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
    assert_eq!(code, ExitCode::FAILURE);
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
    assert_eq!(code, ExitCode::SUCCESS);
}
