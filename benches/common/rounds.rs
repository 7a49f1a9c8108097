//! What the paired benches share: their command-line numbers and the summary of their rounds.

/// The numbers given after `cargo bench --bench NAME --`; `cargo bench` itself passes `--bench`.
pub fn numbers() -> Vec<u64> {
    std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect()
}

/// The median and the quartiles.
pub fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}
