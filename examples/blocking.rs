//! asyncio's `run_in_executor` trap, avoided: blocking jobs stop through their `StopFlag`; one
//! ignores it and is abandoned at the deadline — named in the report, with no hang and no panic.
//! `#[tokio::main]` would wait for that job forever. Ends by itself after about 1.5 s, with
//! status 1: the shutdown had to abandon work.

use std::time::Duration;

#[graceful::main(grace = "1s")]
async fn main() {
    // Cooperative: sleeps on its flag, so it wakes the moment the shutdown starts.
    graceful::spawn_blocking("indexer", |stop| {
        let mut batches = 0;
        while !stop.wait_timeout(Duration::from_millis(100)) {
            batches += 1;
        }
        println!("blocking: indexer stopped after {batches} batches");
    });

    // Cooperative too: checks its flag between units of work.
    let checksum = graceful::spawn_blocking("checksum", |stop| {
        let mut sum = 0u64;
        for chunk in 0u64.. {
            if stop.is_raised() {
                break;
            }
            sum = sum.wrapping_add((0..10_000u64).map(|x| x ^ chunk).sum::<u64>());
        }
        sum
    });

    // Uncooperative: a call that cannot be interrupted (think `std::io::stdin().read_line`).
    graceful::spawn_blocking("legacy-call", |_stop| {
        std::thread::sleep(Duration::from_secs(3600));
    });

    // A service, not a task: it must outlive the start of the shutdown to see the result.
    graceful::spawn_service("checksum-reporter", async move {
        let sum = checksum.await.unwrap();
        println!("blocking: checksum stopped at {sum:#x}");
    });

    tokio::time::sleep(Duration::from_millis(400)).await;
    println!("blocking: main is done; the shutdown starts");
    // Returning starts the shutdown: flags are raised, the cooperative jobs stop, and
    // "legacy-call" is abandoned at the deadline, 1 s from now, and the status is 1: a shutdown
    // that had to abandon work is not a clean one.
}
