//! The operator's `/metrics`, parsed: what the scenarios read of it (reconciles, leadership, API
//! writes, Discord requests), whichever way they reached it (a host process's port, the API
//! server's pod proxy).

use std::collections::BTreeMap;

/// Parsed Prometheus text: `name{labels}` → value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    /// Parses Prometheus text (comments and lines without a number are skipped).
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of `name` exactly as written (with labels), 0 when absent.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// The sum of the series whose `name{labels}` satisfies `pred`.
    pub fn sum_where(&self, pred: impl Fn(&str) -> bool) -> f64 {
        self.0.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum()
    }

    /// The series whose `name{labels}` satisfies `pred`, for messages.
    pub fn series_where(&self, pred: impl Fn(&str) -> bool) -> Vec<(String, f64)> {
        self.0
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Reconciliations started.
    pub fn reconciles(&self) -> f64 {
        self.get("shardset_operator_reconciles_total")
    }

    /// Whether this replica leads.
    pub fn leader(&self) -> bool {
        self.get("shardset_operator_leader") == 1.0
    }

    /// Write requests the operator sent to the API server, except leader-election renewals.
    pub fn writes(&self) -> f64 {
        self.sum_where(|k| {
            k.starts_with("shardset_operator_kube_requests_total{")
                && !k.contains("resource=\"leases\"")
                && ["create", "update", "patch", "delete", "deletecollection"]
                    .iter()
                    .any(|v| k.contains(&format!("verb=\"{v}\"")))
        })
    }

    /// LIST requests the operator sent to the API server (reads that bypass the controller's
    /// caches; a watch is counted apart, as `watch`).
    pub fn lists(&self) -> f64 {
        self.sum_where(|k| {
            k.starts_with("shardset_operator_kube_requests_total{") && k.contains("verb=\"list\"")
        })
    }

    /// Every `kube_requests_total` series, for messages.
    pub fn requests(&self) -> Vec<(String, f64)> {
        self.series_where(|k| k.starts_with("shardset_operator_kube_requests_total{"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_count_write_verbs_but_not_lease_renewals_and_lists_apart() {
        let m = Metrics::parse(
            "# HELP shardset_operator_kube_requests_total requests\n\
             shardset_operator_kube_requests_total{verb=\"patch\",resource=\"pods\"} 2\n\
             shardset_operator_kube_requests_total{verb=\"create\",resource=\"events\"} 1\n\
             shardset_operator_kube_requests_total{verb=\"patch\",resource=\"leases\"} 7\n\
             shardset_operator_kube_requests_total{verb=\"list\",resource=\"pods\"} 9\n\
             shardset_operator_leader 1\n",
        );
        assert_eq!(m.writes(), 3.0);
        assert_eq!(m.lists(), 9.0);
        assert_eq!(m.requests().len(), 4);
        assert!(m.leader());
        assert_eq!(m.reconciles(), 0.0);
    }
}
