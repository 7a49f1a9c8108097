//! What the callgrind-counted benches share: they are run by hand, as `BIN KIND N`.

/// The kind and the task count given on the command line, or `None` when `cargo bench` runs the
/// target itself (with `--bench`): these benches are run by hand, under callgrind.
pub fn kind_and_count() -> Option<(String, usize)> {
    let args: Vec<String> = std::env::args().collect();
    let n = args.get(2)?.parse().ok()?;
    Some((args.get(1)?.clone(), n))
}
