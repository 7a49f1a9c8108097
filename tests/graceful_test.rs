//! `#[graceful::test]`: the body runs under a graceful runtime, the shutdown runs after it, and
//! the test fails when something had to be aborted.

use std::time::Duration;

#[graceful::test(grace = "1s")]
async fn service_stops_when_asked() {
    graceful::spawn_service("worker", graceful::shutdown_requested());
    graceful::spawn(std::future::pending::<()>());
    assert_eq!(graceful::tasks().len(), 3);
}

#[graceful::test(grace = "200ms")]
#[should_panic(expected = "service \"leaky\" at tests/graceful_test.rs:")]
async fn a_service_that_ignores_the_shutdown_fails_the_test() {
    graceful::spawn_service("leaky", std::future::pending::<()>());
}

#[graceful::test]
#[should_panic(expected = "the test failed")]
async fn an_error_fails_the_test() -> Result<(), String> {
    Err("nope".into())
}

#[graceful::test]
async fn errors_propagate_with_question_mark() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[graceful::test(start_paused = true)]
async fn start_paused_runs_a_virtual_clock() {
    let start = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[graceful::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_flavor_is_available() {
    let here = std::thread::current().id();
    let there = graceful::spawn(async { std::thread::current().id() });
    assert_ne!(
        there.await.unwrap(),
        here,
        "spawned tasks run on worker threads"
    );
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("panic in a cancelled task's Drop");
    }
}

#[graceful::test]
#[should_panic(expected = "panicked")]
async fn a_panic_in_the_drop_of_cancelled_work_fails_the_test() {
    let guard = PanicOnDrop;
    graceful::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
}

#[graceful::test]
#[should_panic(expected = "service \"loader\" at tests/graceful_test.rs:")]
async fn a_failed_service_fails_the_test() {
    let loader = graceful::spawn_service("loader", async { Err::<(), _>("no such table") });
    loader.await.unwrap().unwrap_err();
}
