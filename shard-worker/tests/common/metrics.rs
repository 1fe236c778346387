//! Reading a worker's `/metrics` text.

/// The value of the sample `series` (a metric name with its labels, exactly as exported) in
/// `text`, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
