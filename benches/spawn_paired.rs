//! The spawn bench's ratios, measured in pairs: each round runs every variant once, back to back,
//! on the same runtime, and a ratio is taken within the round. The median over the rounds is the
//! figure, and the spread of the middle half says how far to trust it.
//!
//! `cargo bench --bench spawn` runs each variant for seconds, one after the other, and on a shared
//! VM the machine's speed drifts over that time by more than the 5% a target asks to see: one
//! run's `tokio::spawn` took anywhere from 258 to 531 ns. A drift slower than a round moves both
//! sides of a pair alike.
//!
//! ```text
//! cargo bench --bench spawn_paired              # 31 rounds of 100,000 spawns per variant
//! cargo bench --bench spawn_paired -- 11 20000  # rounds, spawns per variant and round
//! ```

use std::time::Duration;

#[path = "common/bound.rs"]
mod bound;
#[path = "common/by_hand.rs"]
mod by_hand;
#[path = "common/rounds.rs"]
mod rounds;
#[path = "common/spawn_host.rs"]
mod spawn_host;

use rounds::spread;
use spawn_host::{Host, Kind};

fn main() {
    let numbers = rounds::numbers();
    let rounds = numbers.first().copied().unwrap_or(31) as usize;
    let iters = numbers.get(1).copied().unwrap_or(100_000);
    let settings = [
        (graceful::Flavor::MultiThread, 1, "2 workers, 1 spawner"),
        (graceful::Flavor::MultiThread, 2, "2 workers, 2 spawners"),
        (graceful::Flavor::CurrentThread, 1, "current_thread"),
    ];
    println!("{rounds} rounds of {iters} spawns per variant; median ratio [middle half]");
    for (flavor, spawners, setting) in settings {
        let host = Host::start(flavor);
        // A round's worth first, so that no variant meets a cold runtime or allocator.
        for kind in Kind::ALL {
            host.measure(kind, spawners, iters);
        }
        let mut times: Vec<[Duration; Kind::ALL.len()]> = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let mut time = [Duration::ZERO; Kind::ALL.len()];
            // Each round starts at another variant, so none always runs first.
            for step in 0..Kind::ALL.len() {
                let index = (round + step) % Kind::ALL.len();
                time[index] = host.measure(Kind::ALL[index], spawners, iters);
            }
            times.push(time);
        }
        let at = |kind: Kind| Kind::ALL.iter().position(|k| *k == kind).unwrap();
        let ratio = |over: Kind, under: Kind| {
            spread(
                times
                    .iter()
                    .map(|t| t[at(over)].as_secs_f64() / t[at(under)].as_secs_f64())
                    .collect(),
            )
        };
        let per_task = |kind: Kind| {
            let nanos = times
                .iter()
                .map(|t| t[at(kind)].as_nanos() as f64 / iters as f64)
                .collect();
            spread(nanos).0
        };
        println!(
            "{setting}: tokio::spawn {:.0} ns a task",
            per_task(Kind::Tokio)
        );
        let pairs = [
            (
                "graceful::spawn / tokio::spawn",
                Kind::Graceful,
                Kind::Tokio,
            ),
            (
                "spawn_service / tokio::spawn",
                Kind::GracefulService,
                Kind::Tokio,
            ),
            (
                "scope.spawn / graceful::spawn",
                Kind::GracefulNestedScope,
                Kind::Graceful,
            ),
            (
                "graceful::spawn / TaskTracker + token",
                Kind::Graceful,
                Kind::TrackerToken,
            ),
            ("the bound / tokio::spawn", Kind::Bound, Kind::Tokio),
        ];
        for (name, over, under) in pairs {
            let (median, low, high) = ratio(over, under);
            println!("  {name}: {median:.3} [{low:.3} – {high:.3}]");
        }
    }
}
