//! Instructions a shutdown with N idle tasks executes, from the trigger to the runtime being gone,
//! on every thread, counted by callgrind rather than timed: a shutdown is a handful of thread
//! wake-ups whose latency on a shared machine varies by more than the 10% its target allows, and
//! a count does not. callgrind writes one count up to the trigger and one after it; the figure is
//! the second's difference between two task counts, per task:
//!
//! ```text
//! cargo bench --bench shutdown_count --no-run    # prints the executable's path, BIN below
//! for n in 10000 20000; do
//!     valgrind --tool=callgrind --dump-before='*shutdown_runs::at_trigger*' \
//!         --callgrind-out-file=cg.%p BIN graceful $n
//! done
//! ```
//!
//! The first argument picks the program: `floor` (a bare tokio runtime, 2 workers, holding N idle
//! `tokio::spawn` tasks, dropped) or `graceful` (N idle `graceful::spawn` tasks, cancelled by
//! `graceful::shutdown()`). callgrind runs one thread at a time, so the count says how much work
//! each does, not how much of it overlaps.

#[path = "common/counted.rs"]
mod counted;
#[path = "common/shutdown_runs.rs"]
mod shutdown_runs;

fn main() {
    let Some((kind, n)) = counted::kind_and_count() else {
        return;
    };
    match kind.as_str() {
        "floor" => drop(shutdown_runs::floor(n)),
        _ => drop(shutdown_runs::graceful(n, false)),
    }
}
