//! The shutdown bench's ratio to the floor, measured in pairs: each round runs the floor and
//! graceful once each, back to back, and takes the ratio within the round. The median over the
//! rounds is the figure, with the middle half's range.
//!
//! ```text
//! cargo bench --bench shutdown_paired              # 1k, 10k and 100k tasks, 41 rounds each
//! cargo bench --bench shutdown_paired -- 1000000 9 # N tasks, rounds
//! ```

#[path = "common/rounds.rs"]
mod rounds;
#[path = "common/shutdown_runs.rs"]
mod shutdown_runs;

use rounds::spread;
use shutdown_runs::{floor, graceful};

fn main() {
    let numbers: Vec<usize> = rounds::numbers().into_iter().map(|n| n as usize).collect();
    let (counts, rounds) = match numbers[..] {
        [n, rounds, ..] => (vec![n], rounds),
        [n] => (vec![n], 41),
        [] => (vec![1_000, 10_000, 100_000], 41),
    };
    println!("{rounds} rounds; median [middle half]");
    for n in counts {
        let (mut floors, mut gracefuls, mut ratios) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            let floor = floor(n).as_secs_f64();
            let graceful = graceful(n, false).as_secs_f64();
            floors.push(floor * 1e3);
            gracefuls.push(graceful * 1e3);
            ratios.push(graceful / floor);
        }
        let (floor, graceful, ratio) = (spread(floors), spread(gracefuls), spread(ratios));
        println!(
            "{n} idle tasks: floor {:.3} ms, graceful::spawn {:.3} ms, ratio {:.2} [{:.2} – {:.2}]",
            floor.0, graceful.0, ratio.0, ratio.1, ratio.2
        );
    }
}
