//! The per-ShardSet gauges the chart's alerts and dashboard read (README, "Metrics and
//! endpoints", prefix `shardset_operator_`): `shardset_shards`, `shardset_ready_shards`,
//! `session_starts_remaining` and `identify_reserve`, each labelled `namespace` and `shardset`.
//! Only the leader reconciles, so only the leader sets them: from each pass's status, and they
//! are dropped when the ShardSet goes (its cleanup) or when the replica stops leading (a
//! standby must not export a stale copy beside the new leader's).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;

use crate::crd::ShardSetStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardSetLabels {
    pub namespace: String,
    pub shardset: String,
}

/// What one ShardSet's gauges show; `None`: the series is not exported (not known yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSetValues {
    /// `status.shards`: the target layout's shard total.
    pub shards: Option<u32>,
    /// `status.readyShards`.
    pub ready_shards: u32,
    /// `status.sessionStartLimit.remaining`.
    pub session_starts_remaining: Option<u32>,
    /// `spec.identifyReserve`.
    pub identify_reserve: u32,
}

/// The gauges' values for a ShardSet whose status is `status` and `spec.identifyReserve` is
/// `identify_reserve`.
pub fn values(status: &ShardSetStatus, identify_reserve: u32) -> ShardSetValues {
    ShardSetValues {
        shards: status.shards,
        ready_shards: status.ready_shards,
        session_starts_remaining: status.session_start_limit.as_ref().map(|l| l.remaining),
        identify_reserve,
    }
}

/// The four gauge families.
#[derive(Debug, Default)]
pub struct ShardSetGauges {
    shards: Family<ShardSetLabels, Gauge>,
    ready_shards: Family<ShardSetLabels, Gauge>,
    session_starts_remaining: Family<ShardSetLabels, Gauge>,
    identify_reserve: Family<ShardSetLabels, Gauge>,
}

impl ShardSetGauges {
    /// The gauges, registered in `registry` (the operator's, prefixed `shardset_operator`).
    pub fn register(registry: &mut Registry) -> Self {
        let gauges = Self::default();
        registry.register(
            "shardset_shards",
            "status.shards of each ShardSet (the target layout's shard total)",
            gauges.shards.clone(),
        );
        registry.register(
            "shardset_ready_shards",
            "status.readyShards of each ShardSet",
            gauges.ready_shards.clone(),
        );
        registry.register(
            "session_starts_remaining",
            "status.sessionStartLimit.remaining of each ShardSet (Discord's session starts left today)",
            gauges.session_starts_remaining.clone(),
        );
        registry.register(
            "identify_reserve",
            "spec.identifyReserve of each ShardSet (session starts the workers never spend)",
            gauges.identify_reserve.clone(),
        );
        gauges
    }

    /// Shows `values` for the ShardSet `namespace/name`.
    pub fn set(&self, namespace: &str, name: &str, values: &ShardSetValues) {
        let labels = ShardSetLabels {
            namespace: namespace.to_owned(),
            shardset: name.to_owned(),
        };
        let set = |family: &Family<ShardSetLabels, Gauge>, value: Option<u32>| match value {
            Some(value) => {
                family.get_or_create(&labels).set(i64::from(value));
            }
            None => {
                family.remove(&labels);
            }
        };
        set(&self.shards, values.shards);
        set(&self.ready_shards, Some(values.ready_shards));
        set(
            &self.session_starts_remaining,
            values.session_starts_remaining,
        );
        set(&self.identify_reserve, Some(values.identify_reserve));
    }

    /// Drops the ShardSet's series (it is being deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let labels = ShardSetLabels {
            namespace: namespace.to_owned(),
            shardset: name.to_owned(),
        };
        for family in self.families() {
            family.remove(&labels);
        }
    }

    /// Drops every ShardSet's series (this replica stopped leading).
    pub fn forget_all(&self) {
        for family in self.families() {
            family.clear();
        }
    }

    fn families(&self) -> [&Family<ShardSetLabels, Gauge>; 4] {
        [
            &self.shards,
            &self.ready_shards,
            &self.session_starts_remaining,
            &self.identify_reserve,
        ]
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::crd::SessionStartLimitStatus;

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn the_values_come_from_the_status_and_the_spec() {
        let status = ShardSetStatus {
            shards: Some(16),
            ready_shards: 12,
            session_start_limit: Some(SessionStartLimitStatus {
                total: 1000,
                remaining: 940,
                reset_at: Time(Timestamp::UNIX_EPOCH),
            }),
            ..ShardSetStatus::default()
        };
        assert_eq!(
            values(&status, 20),
            ShardSetValues {
                shards: Some(16),
                ready_shards: 12,
                session_starts_remaining: Some(940),
                identify_reserve: 20,
            }
        );
        let unknown = values(&ShardSetStatus::default(), 0);
        assert_eq!(unknown.shards, None);
        assert_eq!(unknown.session_starts_remaining, None);
    }

    #[test]
    fn each_shardset_has_its_series_until_it_goes_or_the_lead_is_lost() {
        let mut registry = Registry::with_prefix("shardset_operator");
        let gauges = ShardSetGauges::register(&mut registry);
        let known = ShardSetValues {
            shards: Some(16),
            ready_shards: 12,
            session_starts_remaining: Some(940),
            identify_reserve: 20,
        };
        gauges.set("bots", "alpha", &known);
        gauges.set(
            "bots",
            "beta",
            &ShardSetValues {
                shards: None,
                session_starts_remaining: None,
                ..known
            },
        );
        let text = encode(&registry);
        for line in [
            r#"shardset_operator_shardset_shards{namespace="bots",shardset="alpha"} 16"#,
            r#"shardset_operator_shardset_ready_shards{namespace="bots",shardset="alpha"} 12"#,
            r#"shardset_operator_session_starts_remaining{namespace="bots",shardset="alpha"} 940"#,
            r#"shardset_operator_identify_reserve{namespace="bots",shardset="alpha"} 20"#,
            r#"shardset_operator_identify_reserve{namespace="bots",shardset="beta"} 20"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains(r#"shardset_shards{namespace="bots",shardset="beta"}"#),
            "an unknown total is not exported:\n{text}"
        );
        assert!(!text.contains(r#"session_starts_remaining{namespace="bots",shardset="beta"}"#));

        // A total that becomes unknown again drops its series.
        gauges.set(
            "bots",
            "alpha",
            &ShardSetValues {
                shards: None,
                ..known
            },
        );
        assert!(
            !encode(&registry).contains(r#"shardset_shards{namespace="bots",shardset="alpha"}"#)
        );

        gauges.forget("bots", "alpha");
        let text = encode(&registry);
        assert!(!text.contains(r#"shardset="alpha""#), "{text}");
        assert!(text.contains(r#"shardset="beta""#), "{text}");

        gauges.forget_all();
        assert!(!encode(&registry).contains("shardset=\""));
    }
}
