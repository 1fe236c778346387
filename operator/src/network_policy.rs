//! The worker pods' NetworkPolicy, without a client: one per ShardSet, named like it, owned by it
//! (deleted with it), selecting its pods, made before its pods. Egress only to what a worker
//! talks to (issue 11, item 2): DNS, its Redis (`spec.redis.url`), Discord's REST API and gateway
//! (TCP 443: `https://discord.com/api` and the `wss://` URLs `GET /gateway/bot` and READY give),
//! a trusted fake or proxy at `spec.gateway.apiUrl` (its port: the fake serves REST and the
//! gateway on one), and the bus (`spec.bus.url`). Anything else a worker pod tries (another
//! Service, the API server, a cloud metadata endpoint) is dropped, so a compromised or
//! misconfigured worker cannot carry the token elsewhere.
//!
//! Why ports and not hosts: a NetworkPolicy names peers by label or IP block, never by DNS name,
//! and a Service's ClusterIP is rewritten to a pod IP before the policy is checked. Discord's
//! addresses are Cloudflare's and change; Redis and NATS may be in-cluster pods, managed services
//! or another cluster's. So each rule is "TCP <port> to anywhere"; the peer side is closed by
//! Redis's own password and, for the chart's Redis, its ingress policy. The port is the URL's,
//! which is the pod's port when a Service maps a port to the same target port (the chart's Redis,
//! NATS and the fake do); a Service that maps to another target port needs a policy of the
//! user's own (policies add up). A `redis+sentinel://` URL names the sentinels' ports; the
//! primary and replicas they name are reached on Redis's 6379 (the chart's topology), another
//! port needs a policy of the user's own.
//!
//! Ingress is not restricted: a worker serves only `/metrics` and health (no secrets), and
//! Prometheus and the kubelet's probes reach it. The operator makes it unless started with
//! `--worker-network-policy=false` (the chart's `networkPolicy.workers`), for CNIs or egress
//! proxies that need other rules.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use shardset_contract::redis_link::SentinelUrl;
use url::Url;

use crate::crd::{ShardSet, ShardSetSpec};
use crate::owned;
use crate::pods::{self, BuildError};

/// DNS, UDP and TCP.
pub const DNS_PORT: u16 = 53;
/// Discord's REST API and gateway (`https://`, `wss://`).
pub const HTTPS_PORT: u16 = 443;
/// Redis's port when the URL names none.
pub const REDIS_DEFAULT_PORT: u16 = 6379;
/// NATS's client port when a bus URL names none.
pub const NATS_DEFAULT_PORT: u16 = 4222;

/// The policy's name: the ShardSet's.
pub fn name(shardset: &ShardSet) -> String {
    shardset.name_any()
}

/// The port of `url`, else `default` (also for a URL that does not parse: the CRD's pattern
/// admits some that `url` refuses, and the worker will say why it cannot connect).
fn port_of(url: &str, default: u16) -> u16 {
    Url::parse(url.trim())
        .ok()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(default)
}

/// The ports of the bot's Redis: the URL's, or under Sentinel the sentinels' and Redis's own.
fn redis_ports(url: &str) -> Vec<u16> {
    match SentinelUrl::parse(url.trim()) {
        Some(Ok(sentinel)) => sentinel
            .sentinels
            .iter()
            .map(|(_, port)| *port)
            .chain([REDIS_DEFAULT_PORT])
            .collect(),
        // The worker will say why it cannot connect.
        Some(Err(_)) => vec![REDIS_DEFAULT_PORT],
        None => vec![port_of(url, REDIS_DEFAULT_PORT)],
    }
}

/// The TCP ports a worker pod of `spec` may open connections to, besides DNS: 443, Redis's,
/// the REST base's (Discord's or a trusted fake's), and each bus URL's.
pub fn egress_ports(spec: &ShardSetSpec) -> BTreeSet<u16> {
    let mut ports = BTreeSet::from([HTTPS_PORT, port_of(spec.api_url(), HTTPS_PORT)]);
    ports.extend(redis_ports(&spec.redis.url));
    if let Some(bus) = &spec.bus {
        ports.extend(
            bus.url
                .split(',')
                .filter(|u| !u.trim().is_empty())
                .map(|u| port_of(u, NATS_DEFAULT_PORT)),
        );
    }
    ports
}

fn port(protocol: &str, number: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(i32::from(number))),
        ..NetworkPolicyPort::default()
    }
}

/// The policy the ShardSet's pods need.
pub fn build(shardset: &ShardSet) -> Result<NetworkPolicy, BuildError> {
    let metadata = owned::metadata(shardset)?;
    let name = shardset.name_any();
    // No `to`: any destination, on these ports only.
    let dns = NetworkPolicyEgressRule {
        ports: Some(vec![port("UDP", DNS_PORT), port("TCP", DNS_PORT)]),
        to: None,
    };
    let services = NetworkPolicyEgressRule {
        ports: Some(
            egress_ports(&shardset.spec)
                .into_iter()
                .map(|p| port("TCP", p))
                .collect(),
        ),
        to: None,
    };
    Ok(NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(pods::selector_labels(&name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Egress".to_owned()]),
            egress: Some(vec![dns, services]),
            ingress: None,
        }),
    })
}

/// What to do about the policy.
pub type Step = owned::Step<NetworkPolicy>;

/// Compares the wanted policy with the one found under its name (`None`: none).
pub fn step(want: NetworkPolicy, found: Option<&NetworkPolicy>) -> Step {
    owned::step(want, found, |f: &NetworkPolicy| f.spec.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shardset(extra: serde_json::Value) -> ShardSet {
        let mut spec = serde_json::json!({
            "shards": 4,
            "tokenSecretRef": {"name": "bot-token"},
            "redis": {"url": "redis://shardset-operator-redis.bots:6380/0"},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut ss = ShardSet::new("bot", serde_json::from_value(spec).expect("spec"));
        ss.metadata.namespace = Some("ns".into());
        ss.metadata.uid = Some("uid-1".into());
        ss
    }

    fn ports(ss: &ShardSet) -> Vec<u16> {
        egress_ports(&ss.spec).into_iter().collect()
    }

    #[test]
    fn egress_is_discord_and_the_redis_port_by_default() {
        assert_eq!(ports(&shardset(serde_json::json!({}))), [443, 6380]);
        let no_port = shardset(serde_json::json!({"redis": {"url": "rediss://redis.example"}}));
        assert_eq!(ports(&no_port), [443, 6379]);
    }

    #[test]
    fn sentinel_urls_open_the_sentinels_ports_and_redis_s_own() {
        let ss = shardset(serde_json::json!({"redis": {
            "url": "redis+sentinel://:pw@s-0:26380,s-1,s-2:26381/shardset"
        }}));
        assert_eq!(ports(&ss), [443, 6379, 26379, 26380, 26381]);
    }

    #[test]
    fn a_fake_and_the_bus_open_their_ports() {
        let ss = shardset(serde_json::json!({
            "gateway": {"apiUrl": "http://fake-discord:8080/api"},
            "bus": {"url": "nats://user:pw@nats-a:4223, nats://nats-b"},
        }));
        assert_eq!(ports(&ss), [443, 4222, 4223, 6380, 8080]);
        let plain_http = shardset(serde_json::json!({"gateway": {"apiUrl": "http://proxy/api"}}));
        assert_eq!(ports(&plain_http), [80, 443, 6380]);
    }

    #[test]
    fn the_policy_limits_egress_of_the_shardsets_pods_and_is_owned_by_it() {
        let ss = shardset(serde_json::json!({}));
        let policy = build(&ss).expect("build");
        assert_eq!(policy.name_any(), "bot");
        assert_eq!(policy.metadata.namespace.as_deref(), Some("ns"));
        let owner = &policy.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ShardSet", "uid-1", Some(true))
        );
        let spec = policy.spec.as_ref().expect("spec");
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Egress".to_owned()][..])
        );
        let rules: Vec<Vec<(String, i32)>> = spec
            .egress
            .iter()
            .flatten()
            .map(|rule| {
                assert!(rule.to.is_none());
                rule.ports
                    .iter()
                    .flatten()
                    .map(|p| {
                        let number = match &p.port {
                            Some(IntOrString::Int(n)) => *n,
                            other => panic!("{other:?}"),
                        };
                        (p.protocol.clone().unwrap_or_default(), number)
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            rules,
            [
                vec![("UDP".to_owned(), 53), ("TCP".to_owned(), 53)],
                vec![("TCP".to_owned(), 443), ("TCP".to_owned(), 6380)],
            ]
        );
        // Every label it selects on is one the operator puts on each of its pods.
        let selected = spec
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone());
        let (_, pod) = crate::pods::desired_pods(&ss, "worker:dev", 4)
            .expect("pods")
            .remove(0);
        for (key, value) in selected.iter().flatten() {
            assert_eq!(pod.labels().get(key), Some(value), "{key}");
        }
    }

    #[test]
    fn a_policy_is_written_only_when_it_differs_and_never_over_a_foreign_one() {
        let want = build(&shardset(serde_json::json!({}))).expect("build");
        assert_eq!(step(want.clone(), None), Step::Create(want.clone()));
        let mut found = want.clone();
        found.metadata.resource_version = Some("3".into());
        assert_eq!(step(want.clone(), Some(&found)), Step::Keep);
        let moved = build(&shardset(
            serde_json::json!({"redis": {"url": "redis://r:7000"}}),
        ))
        .expect("build");
        assert_eq!(step(moved.clone(), Some(&found)), Step::Update(moved));
        found.metadata.owner_references = None;
        assert_eq!(step(want, Some(&found)), Step::NameTaken);
    }
}
