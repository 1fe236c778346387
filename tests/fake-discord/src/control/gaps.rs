//! What benchmarks read of the Identify log: the gaps between consecutive accepted Identifies of
//! each bucket (the interval Discord's window rule bounds from below), and quantiles of them.
//! Pure functions over [`IdentifyRecord`]s, whether read in process or from `/control/identifies`.

use std::collections::HashMap;

use super::records::{IdentifyOutcome, IdentifyRecord};

/// The gaps (ms) between consecutive accepted Identifies of each bucket, over all buckets,
/// sorted; `stamp` gives an Identify's time in µs (`at_us`: arrival, what the fake's rule uses).
pub fn bucket_gaps_ms(
    records: &[IdentifyRecord],
    stamp: impl Fn(&IdentifyRecord) -> u64,
) -> Vec<f64> {
    let mut gaps: Vec<f64> = timed_bucket_gaps(records, stamp)
        .into_iter()
        .map(|(_, gap_ms)| gap_ms)
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps
}

/// Each gap of [`bucket_gaps_ms`] with the stamp (µs) of the Identify that ends it, so a report
/// can tell the gaps of one phase of a run from another's; in no particular order.
pub fn timed_bucket_gaps(
    records: &[IdentifyRecord],
    stamp: impl Fn(&IdentifyRecord) -> u64,
) -> Vec<(u64, f64)> {
    let mut by_bucket: HashMap<u32, Vec<u64>> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.outcome == IdentifyOutcome::Accepted)
    {
        by_bucket.entry(r.bucket).or_default().push(stamp(r));
    }
    by_bucket
        .into_values()
        .flat_map(|mut times| {
            times.sort_unstable();
            times
                .windows(2)
                .map(|w| (w[1], (w[1] - w[0]) as f64 / 1000.0))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `q` quantile (0..=1) of sorted values (NaN when there are none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

/// `min a  p50 b  p90 c  p99 d  max e` of sorted values, one decimal each, for reports.
pub fn spread(sorted: &[f64]) -> String {
    format!(
        "min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        quantile(sorted, 0.0),
        quantile(sorted, 0.5),
        quantile(sorted, 0.9),
        quantile(sorted, 0.99),
        quantile(sorted, 1.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(bucket: u32, at_us: u64, outcome: IdentifyOutcome) -> IdentifyRecord {
        IdentifyRecord {
            at_ms: at_us / 1000,
            at_us,
            lag_us: 0,
            shard: bucket,
            num_shards: 4,
            bucket,
            outcome,
            close_code: None,
            session_id: None,
            connection: 1,
        }
    }

    #[test]
    fn gaps_are_within_each_bucket_of_accepted_identifies() {
        let records = [
            identify(0, 1_000_000, IdentifyOutcome::Accepted),
            identify(1, 1_000_500, IdentifyOutcome::Accepted),
            // Refused: no gap starts or ends here.
            identify(0, 1_500_000, IdentifyOutcome::InvalidSession),
            identify(1, 2_200_500, IdentifyOutcome::Accepted),
            identify(0, 2_100_000, IdentifyOutcome::Accepted),
        ];
        assert_eq!(bucket_gaps_ms(&records, |r| r.at_us), vec![1100.0, 1200.0]);
        let mut timed = timed_bucket_gaps(&records, |r| r.at_us);
        timed.sort_by_key(|(end, _)| *end);
        assert_eq!(timed, vec![(2_100_000, 1100.0), (2_200_500, 1200.0)]);
        assert_eq!(
            bucket_gaps_ms(&records[..1], |r| r.at_us),
            Vec::<f64>::new()
        );
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.0), 1.0);
        assert_eq!(quantile(&sorted, 0.5), 3.0);
        assert_eq!(quantile(&sorted, 1.0), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(
            spread(&sorted),
            "min 1.0  p50 3.0  p90 5.0  p99 5.0  max 5.0"
        );
    }
}
