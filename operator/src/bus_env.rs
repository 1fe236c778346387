//! The worker pods' bus variables, from `spec.bus` (the contract: `shardset_contract::env`, the
//! `NATS_*` and `SHARDSET_*` names; their meaning: `docs/bus-protocol.md`). Only what is set is
//! passed on: the worker's defaults are the contract's, and a pod spec unchanged by a field keeps
//! every running pod's hash.

use k8s_openapi::api::core::v1::EnvVar;
use shardset_contract::{bus, env};

use crate::crd::BusSpec;
use crate::pods::{secret, value};

/// The bus variables of a worker pod of the ShardSet `namespace/shardset`.
pub fn bus_env(spec: &BusSpec, namespace: &str, shardset: &str) -> Vec<EnvVar> {
    let stream = spec
        .stream
        .clone()
        .unwrap_or_else(|| bus::default_stream_name(namespace, shardset));
    let prefix = spec
        .subject_prefix
        .clone()
        .unwrap_or_else(|| bus::default_subject_prefix(namespace, shardset));
    let mut vars = vec![
        value(env::NATS_URL, spec.url.clone()),
        value(env::SHARDSET_STREAM, stream),
        value(env::SHARDSET_SUBJECT_PREFIX, prefix),
        value(env::SHARDSET_PARTITIONS, spec.partitions.to_string()),
    ];
    if let Some(groups) = &spec.handler_groups {
        vars.push(value(env::SHARDSET_BUS_GROUPS, groups.join(",")));
    }
    if let Some(creds) = &spec.secret_ref {
        for (name, key) in [
            (env::NATS_USER, &creds.user_key),
            (env::NATS_PASSWORD, &creds.password_key),
            (env::NATS_TOKEN, &creds.token_key),
        ] {
            if let Some(key) = key {
                vars.push(secret(name, &creds.name, key));
            }
        }
    }
    let limits = spec.limits.clone().unwrap_or_default();
    for (name, limit) in [
        (env::SHARDSET_BUS_MAX_BYTES, limits.max_bytes),
        (env::SHARDSET_BUS_MAX_MESSAGES, limits.max_messages),
        (
            env::SHARDSET_BUS_MAX_AGE_MS,
            limits.max_age_seconds.map(|s| s.saturating_mul(1000)),
        ),
        (env::SHARDSET_BUS_REPLICAS, limits.replicas.map(u64::from)),
        (
            env::SHARDSET_BUS_MAX_IN_FLIGHT,
            limits.max_in_flight.map(u64::from),
        ),
    ] {
        if let Some(limit) = limit {
            vars.push(value(name, limit.to_string()));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(json: serde_json::Value) -> BusSpec {
        serde_json::from_value(json).expect("bus spec")
    }

    fn by_name(vars: Vec<EnvVar>) -> BTreeMap<String, EnvVar> {
        vars.into_iter().map(|v| (v.name.clone(), v)).collect()
    }

    #[test]
    fn defaults_name_the_stream_and_prefix_after_the_shardset() {
        let vars = by_name(bus_env(
            &spec(serde_json::json!({"url": "nats://nats:4222"})),
            "bots",
            "my-bot",
        ));
        let get = |n: &str| vars[n].value.clone().unwrap_or_default();
        assert_eq!(get(env::NATS_URL), "nats://nats:4222");
        assert_eq!(get(env::SHARDSET_STREAM), "shardset-bots-my-bot");
        assert_eq!(get(env::SHARDSET_SUBJECT_PREFIX), "shardset.bots.my-bot");
        assert_eq!(get(env::SHARDSET_PARTITIONS), "16");
        assert_eq!(vars.len(), 4, "nothing unset is passed: {vars:?}");
    }

    #[test]
    fn credentials_come_by_secret_key_ref_and_limits_convert() {
        let vars = by_name(bus_env(
            &spec(serde_json::json!({
                "url": "nats://nats:4222",
                "stream": "s",
                "subjectPrefix": "p.q",
                "partitions": 4,
                "handlerGroups": ["default", "audit"],
                "secretRef": {"name": "nats", "userKey": "user", "passwordKey": "password"},
                "limits": {"maxAgeSeconds": 60, "maxInFlight": 100},
            })),
            "bots",
            "my-bot",
        ));
        let password = &vars[env::NATS_PASSWORD];
        assert!(
            password.value.is_none(),
            "a password never enters the pod spec"
        );
        let key = password
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
            .expect("secretKeyRef");
        assert_eq!((key.name.as_str(), key.key.as_str()), ("nats", "password"));
        assert!(vars.contains_key(env::NATS_USER));
        assert!(!vars.contains_key(env::NATS_TOKEN));
        let get = |n: &str| vars[n].value.clone().unwrap_or_default();
        assert_eq!(get(env::SHARDSET_STREAM), "s");
        assert_eq!(get(env::SHARDSET_SUBJECT_PREFIX), "p.q");
        assert_eq!(get(env::SHARDSET_PARTITIONS), "4");
        assert_eq!(get(env::SHARDSET_BUS_GROUPS), "default,audit");
        assert_eq!(get(env::SHARDSET_BUS_MAX_AGE_MS), "60000");
        assert_eq!(get(env::SHARDSET_BUS_MAX_IN_FLIGHT), "100");
        assert!(!vars.contains_key(env::SHARDSET_BUS_MAX_BYTES));
    }
}
