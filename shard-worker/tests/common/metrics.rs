//! Reading a worker's `/metrics` text.

/// The value of the sample `series` (a metric name with its labels, exactly as exported) in
/// `text`, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// The sum of every sample of metric `name`, whatever its labels, in `text`.
pub fn total(text: &str, name: &str) -> f64 {
    total_with(text, name, "")
}

/// The sum of the samples of metric `name` whose labels include `label` (e.g. `reason="full"`).
pub fn total_with(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && line.contains(label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
