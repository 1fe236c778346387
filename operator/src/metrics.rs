//! Prometheus metrics of the operator (served on `/metrics`), and the tower layer that counts
//! every request the operator's kube client sends, by verb and resource.
//!
//! Names (prefix `shardset_operator_`): `reconciles_total`, `reconcile_failures_total{error}`,
//! `reconcile_duration_seconds`, `kube_requests_total{verb,resource}`, `pod_actions_total{action}`,
//! `discord_requests_total{endpoint,result}`, `leader` (1 while this replica holds the Lease),
//! `reshard_steps_total{step}` (roles written and refusals, by step), `reshard_duration_seconds`
//! (a BlueGreen hand-over, from its start to the new layout acting alone), and the per-ShardSet
//! gauges of [`crate::shardset_gauges`].

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;

use crate::shardset_gauges::ShardSetGauges;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscordLabels {
    endpoint: &'static str,
    result: &'static str,
}

/// Every metric, registered once; cheap to clone behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
    kube_requests: Family<RequestLabels, Counter>,
    pod_actions: Family<ActionLabels, Counter>,
    discord_requests: Family<DiscordLabels, Counter>,
    leader: Gauge,
    reshard_steps: Family<StepLabels, Counter>,
    reshard_duration: Histogram,
    shardsets: ShardSetGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shardset_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciliations started", reconciles.clone());
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by error",
            failures.clone(),
        );
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconciliation",
            duration.clone(),
        );
        let kube_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Kubernetes API requests sent, by verb and resource",
            kube_requests.clone(),
        );
        let pod_actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "pod_actions",
            "Worker pods created and deleted",
            pod_actions.clone(),
        );
        let discord_requests = Family::<DiscordLabels, Counter>::default();
        registry.register(
            "discord_requests",
            "Discord REST requests, by endpoint and result",
            discord_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controller",
            leader.clone(),
        );
        let reshard_steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "reshard_steps",
            "Reshard steps written to Redis, and refusals, by step",
            reshard_steps.clone(),
        );
        let reshard_duration =
            Histogram::new([5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]);
        registry.register(
            "reshard_duration_seconds",
            "Duration of a BlueGreen hand-over, from its start to the new layout acting alone",
            reshard_duration.clone(),
        );
        let shardsets = ShardSetGauges::register(&mut registry);
        Self {
            registry,
            shardsets,
            reshard_steps,
            reshard_duration,
            reconciles,
            failures,
            duration,
            kube_requests,
            pod_actions,
            discord_requests,
            leader,
        }
    }

    /// Counts a reshard step (a condition reason; a fixed set).
    pub fn reshard_step(&self, step: &'static str) {
        self.reshard_steps.get_or_create(&StepLabels { step }).inc();
    }

    /// Observes a finished hand-over.
    pub fn reshard_finished(&self, took: std::time::Duration) {
        self.reshard_duration.observe(took.as_secs_f64());
    }

    /// Counts a reconciliation; the returned guard observes its duration when dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            histogram: &self.duration,
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, error: &'static str) {
        self.failures.get_or_create(&ErrorLabels { error }).inc();
    }

    pub fn pod_action(&self, action: &'static str, count: usize) {
        self.pod_actions
            .get_or_create(&ActionLabels { action })
            .inc_by(count as u64);
    }

    pub fn discord_request(&self, endpoint: &'static str, result: &'static str) {
        self.discord_requests
            .get_or_create(&DiscordLabels { endpoint, result })
            .inc();
    }

    /// Whether this replica leads; one that stops leading drops its per-ShardSet gauges (the
    /// new leader exports them).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        if !leader {
            self.shardsets.forget_all();
        }
    }

    /// The per-ShardSet gauges, set by the leader's reconciles.
    pub fn shardsets(&self) -> &ShardSetGauges {
        &self.shardsets
    }

    fn kube_request(&self, verb: &'static str, resource: String) {
        self.kube_requests
            .get_or_create(&RequestLabels { verb, resource })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes the reconcile duration when dropped (also on early returns and errors).
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// A tower layer for the kube client that counts each request in `kube_requests_total`.
pub fn request_counter<B>(
    metrics: Arc<Metrics>,
) -> tower::util::MapRequestLayer<impl FnMut(http::Request<B>) -> http::Request<B> + Clone> {
    tower::util::MapRequestLayer::new(move |request: http::Request<B>| {
        let (verb, resource) = classify(request.method(), request.uri());
        metrics.kube_request(verb, resource);
        request
    })
}

/// The Kubernetes verb and `resource[/subresource]` of an API request.
pub fn classify(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // Skip `api/v1` or `apis/<group>/<version>`.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or(&[]);
    // Skip `namespaces/<ns>` when a resource follows it.
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let resource = match rest {
        [] => "other".to_owned(),
        [resource] | [resource, _] => (*resource).to_owned(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
    };
    let named = rest.len() >= 2;
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// True for verbs that change state on the API server.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: http::Method, uri: &str) -> (&'static str, String) {
        classify(&method, &uri.parse().expect("uri"))
    }

    #[test]
    fn classifies_requests() {
        use http::Method;
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/ns/pods?labelSelector=a%3Db"
            ),
            ("list", "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/pods?watch=true&resourceVersion=1"),
            ("watch", "pods".into())
        );
        assert_eq!(
            c(Method::POST, "/api/v1/namespaces/ns/pods?"),
            ("create", "pods".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/ns/pods/bot-10-0-2"),
            ("delete", "pods".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/shardset.io/v1alpha1/namespaces/ns/shardsets/bot/status?fieldManager=x"
            ),
            ("patch", "shardsets/status".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/op"
            ),
            ("get", "leases".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns"),
            ("get", "namespaces".into())
        );
        assert_eq!(c(Method::GET, "/version"), ("list", "other".into()));
        assert!(is_write("patch") && !is_write("watch"));
    }

    #[test]
    fn encodes_the_metric_names() {
        let m = Metrics::new();
        let _timer = m.reconcile_started();
        m.reconcile_failed("kube");
        m.pod_action("create", 3);
        m.set_leader(true);
        let text = m.encode();
        for name in [
            "shardset_operator_reconciles_total 1",
            "shardset_operator_reconcile_failures_total{error=\"kube\"} 1",
            "shardset_operator_pod_actions_total{action=\"create\"} 3",
            "shardset_operator_leader 1",
            "shardset_operator_reconcile_duration_seconds_bucket",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn a_replica_that_stops_leading_drops_the_shardset_gauges() {
        let m = Metrics::new();
        m.set_leader(true);
        m.shardsets().set(
            "bots",
            "alpha",
            &crate::shardset_gauges::ShardSetValues {
                shards: Some(4),
                ready_shards: 3,
                session_starts_remaining: Some(900),
                identify_reserve: 10,
            },
        );
        let text = m.encode();
        assert!(
            text.contains(
                r#"shardset_operator_shardset_ready_shards{namespace="bots",shardset="alpha"} 3"#
            ),
            "{text}"
        );
        m.set_leader(false);
        let text = m.encode();
        assert!(!text.contains(r#"shardset="alpha""#), "{text}");
        assert!(text.contains("shardset_operator_leader 0"), "{text}");
    }
}
