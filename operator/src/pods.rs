//! Building a worker Pod for one shard range, without a client.
//!
//! The pod carries the env contract of `shardset_contract::env` (the token only by
//! `secretKeyRef`), the worker's probes, a restricted security context, our labels and owner
//! reference, its layout spread over nodes (unless `spec.pod` says otherwise), and a `spec-hash`
//! label: a hash of everything else the operator put into it, so that a later spec change is
//! seen as drift without comparing fields the apiserver defaults.
//!
//! The image is `spec.image`, or the default the operator was started with ([`worker_image`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, Probe, SeccompProfile,
    SecretKeySelector, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use shardset_contract::env;

use crate::crd::ShardSet;
use crate::names::{self, labels};
use crate::node_loss;
use crate::plan::{self, DesiredPod, ObservedPod, ShardRange};
use crate::redis_ca;

/// UID and GID the worker runs as (the distroless "nonroot" user; images are `FROM scratch`).
pub const WORKER_UID: i64 = 65532;
/// Name of the worker container.
pub const CONTAINER_NAME: &str = "worker";
/// The node label the default topology spread uses: one node, one domain.
pub const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Why a pod could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the ShardSet has no {0} yet")]
    MissingMetadata(&'static str),
}

/// The worker image of `shardset`: `spec.image`, else `default` (the image the operator was
/// released with, `--worker-image`); `None` when neither is set (no pod can be built).
pub fn worker_image<'a>(shardset: &'a ShardSet, default: Option<&'a str>) -> Option<&'a str> {
    shardset.spec.image.as_deref().or(default)
}

/// The desired pods of layout `total` running `image`, each with its planning record.
pub fn desired_pods(
    shardset: &ShardSet,
    image: &str,
    total: u32,
) -> Result<Vec<(DesiredPod, Pod)>, BuildError> {
    desired_pods_for_token(shardset, image, total, None)
}

/// [`desired_pods`], with `token_digest` (a digest of the bot token, never the token) folded
/// into each pod's `spec-hash`: the pods read the token from the Secret only when they start, so
/// a new token in the Secret must replace them (one at a time, each resuming its sessions), like
/// any other change of what the pods run with.
pub fn desired_pods_for_token(
    shardset: &ShardSet,
    image: &str,
    total: u32,
    token_digest: Option<&str>,
) -> Result<Vec<(DesiredPod, Pod)>, BuildError> {
    plan::ranges(total, shardset.spec.shards_per_pod)
        .into_iter()
        .map(|range| {
            let mut pod = build_pod(shardset, image, total, range)?;
            if let Some(digest) = token_digest {
                let spec = pod
                    .labels()
                    .get(labels::SPEC_HASH)
                    .cloned()
                    .unwrap_or_default();
                let hash = fnv1a([spec.as_bytes(), b":", digest.as_bytes()].concat());
                pod.labels_mut().insert(labels::SPEC_HASH.to_owned(), hash);
            }
            let desired = DesiredPod {
                name: pod.name_any(),
                range,
                hash: pod
                    .labels()
                    .get(labels::SPEC_HASH)
                    .cloned()
                    .unwrap_or_default(),
            };
            Ok((desired, pod))
        })
        .collect()
}

/// The pod running `range` of the layout with `total` shards, with the worker `image`.
pub fn build_pod(
    shardset: &ShardSet,
    image: &str,
    total: u32,
    range: ShardRange,
) -> Result<Pod, BuildError> {
    let (name, namespace, owner) = identity(shardset)?;
    let layout = shardset_contract::layout_name(total);
    let spec = &shardset.spec;
    let overrides = spec.pod.clone().unwrap_or_default();

    let mut pod_labels = overrides.labels.clone().unwrap_or_default();
    pod_labels.extend(selector_labels(name));
    pod_labels.extend([
        (labels::NAME.to_owned(), names::APP_NAME.to_owned()),
        (labels::COMPONENT.to_owned(), names::COMPONENT.to_owned()),
        (labels::PART_OF.to_owned(), names::PART_OF.to_owned()),
        (labels::LAYOUT.to_owned(), layout.clone()),
        (labels::SHARD_FIRST.to_owned(), range.first.to_string()),
        (labels::SHARD_LAST.to_owned(), range.last.to_string()),
    ]);

    let http_get = |path: &str| HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::String("http".into()),
        ..HTTPGetAction::default()
    };

    let mut env = worker_env(shardset, name, total, range);
    let mut volume_mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("16Mi".into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if let Some((volume, mount, var)) = redis_ca::pod_parts(&spec.redis) {
        volumes.push(volume);
        volume_mounts.push(mount);
        env.push(var);
    }

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image.to_owned()),
        image_pull_policy: overrides.image_pull_policy.map(|p| p.as_str().to_owned()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(shardset_contract::WORKER_HTTP_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(http_get(shardset_contract::READYZ_PATH)),
            period_seconds: Some(2),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(http_get(shardset_contract::HEALTHZ_PATH)),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: overrides.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        containers: vec![container],
        restart_policy: Some("Always".into()),
        // Workers talk to Discord and Redis, never to the Kubernetes API.
        automount_service_account_token: Some(false),
        // Hundreds of `*_SERVICE_HOST` variables are noise to a worker.
        enable_service_links: Some(false),
        // Time to save every session to Redis and close resumably on SIGTERM.
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(volumes),
        node_selector: overrides.node_selector.clone(),
        // Kubernetes' default keeps pods on a lost node for 300 s; see `node_loss`.
        tolerations: Some(node_loss::tolerations(overrides.tolerations.as_deref())),
        affinity: overrides.affinity.clone(),
        topology_spread_constraints: Some(
            overrides
                .topology_spread_constraints
                .clone()
                .unwrap_or_else(|| spread_over_nodes(name, &layout)),
        )
        .filter(|c| !c.is_empty()),
        image_pull_secrets: overrides.image_pull_secrets.clone(),
        priority_class_name: overrides.priority_class_name.clone(),
        ..PodSpec::default()
    };

    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(plan::pod_name(name, &layout, range)),
            namespace: Some(namespace.to_owned()),
            labels: Some(pod_labels),
            annotations: overrides.annotations.clone(),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    };
    let hash = spec_hash(&pod);
    pod.labels_mut().insert(labels::SPEC_HASH.to_owned(), hash);
    Ok(pod)
}

/// The default topology spread: each layout's pods spread over nodes (at most one more on any
/// node than on another, where the scheduler can), so that losing or draining a node takes as
/// few of a layout's shards as it can. `ScheduleAnyway`: a pod still starts when it cannot be
/// placed evenly (one node left, a drain under way).
fn spread_over_nodes(shardset: &str, layout: &str) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: SPREAD_TOPOLOGY_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                (labels::SHARDSET.to_owned(), shardset.to_owned()),
                (labels::LAYOUT.to_owned(), layout.to_owned()),
            ])),
            ..LabelSelector::default()
        }),
        ..TopologySpreadConstraint::default()
    }]
}

/// The ShardSet's name, namespace and controller owner reference: what every object the
/// operator makes for it carries.
pub fn identity(shardset: &ShardSet) -> Result<(&str, &str, OwnerReference), BuildError> {
    let name = shardset
        .metadata
        .name
        .as_deref()
        .ok_or(BuildError::MissingMetadata("name"))?;
    let namespace = shardset
        .metadata
        .namespace
        .as_deref()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let owner = shardset
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingMetadata("uid"))?;
    Ok((name, namespace, owner))
}

/// Labels shared by every pod of a ShardSet; the operator lists its pods by them.
pub fn selector_labels(shardset: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::SHARDSET.to_owned(), shardset.to_owned()),
        (labels::INSTANCE.to_owned(), shardset.to_owned()),
        (labels::MANAGED_BY.to_owned(), names::MANAGED_BY.to_owned()),
    ])
}

/// A literal variable.
pub(crate) fn value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

/// A variable read from a Secret's key by the kubelet: the value never enters the pod spec.
pub(crate) fn secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The worker's env contract for one pod, then the user's extra variables.
fn worker_env(shardset: &ShardSet, name: &str, total: u32, range: ShardRange) -> Vec<EnvVar> {
    let spec = &shardset.spec;
    let mut vars = vec![
        value(env::SHARDSET_NAME, name.to_owned()),
        value(env::SHARDSET_LAYOUT, shardset_contract::layout_name(total)),
        value(env::SHARD_FIRST, range.first.to_string()),
        value(env::SHARD_LAST, range.last.to_string()),
        value(env::SHARD_TOTAL, total.to_string()),
        value(env::DISCORD_INTENTS, spec.intents.to_string()),
        value(env::DISCORD_API_URL, spec.api_url().to_owned()),
        value(env::REDIS_URL, spec.redis.url.clone()),
        value(env::IDENTIFY_RESERVE, spec.identify_reserve.to_string()),
    ];
    if let Some(max_concurrency) = spec.max_concurrency {
        vars.push(value(env::MAX_CONCURRENCY, max_concurrency.to_string()));
    }
    if let Some(window) = spec.gateway.as_ref().and_then(|g| g.identify_window_ms) {
        vars.push(value(env::IDENTIFY_WINDOW_MS, window.to_string()));
    }
    if let Some(compression) = spec.gateway.as_ref().and_then(|g| g.compression) {
        vars.push(value(
            env::GATEWAY_COMPRESSION,
            compression.name().to_owned(),
        ));
    }
    // Only when set: the worker's defaults are the operator's (one constant in `contract`), and
    // a pod spec unchanged by this field keeps every running pod's hash.
    if let Some(handover) = &spec.handover {
        if let Some(window) = handover.window_ms {
            vars.push(value(env::HANDOVER_WINDOW_MS, window.to_string()));
        }
        if let Some(ttl) = handover.claim_ttl_ms {
            vars.push(value(env::HANDOVER_CLAIM_TTL_MS, ttl.to_string()));
        }
    }
    vars.push(secret(
        env::DISCORD_TOKEN,
        &spec.token_secret_ref.name,
        &spec.token_secret_ref.key,
    ));
    if let Some(redis_secret) = &spec.redis.secret_ref {
        vars.push(secret(
            env::REDIS_PASSWORD,
            &redis_secret.name,
            &redis_secret.key,
        ));
    }
    vars.push(EnvVar {
        name: env::POD_NAME.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: Some("v1".into()),
            }),
            ..EnvVarSource::default()
        }),
    });
    if let Some(bus) = &spec.bus {
        let namespace = shardset.metadata.namespace.as_deref().unwrap_or_default();
        vars.extend(crate::bus_env::bus_env(bus, namespace, name));
    }
    vars.extend(
        spec.pod
            .as_ref()
            .and_then(|p| p.env.clone())
            .unwrap_or_default(),
    );
    vars
}

/// What planning needs to know of an existing pod. `owner_uid` is the ShardSet's uid: only a
/// pod whose controller reference carries it is ours.
pub fn observe(pod: &Pod, owner_uid: &str) -> ObservedPod {
    let labels = pod.labels();
    let number = |key: &str| labels.get(key).and_then(|v| v.parse::<u32>().ok());
    let range = match (number(labels::SHARD_FIRST), number(labels::SHARD_LAST)) {
        (Some(first), Some(last)) if first <= last => Some(ShardRange { first, last }),
        _ => None,
    };
    let owned = pod
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == owner_uid);
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ObservedPod {
        name: pod.name_any(),
        owned,
        layout: labels.get(labels::LAYOUT).cloned(),
        range,
        hash: labels.get(labels::SPEC_HASH).cloned(),
        ready,
        never_ran: !ready && never_ran(pod),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// Whether no container of `pod` ever ran: none running or exited now, none with a previous
/// run (`lastState`), or no container status at all (not scheduled, not created). Such a pod
/// (`ImagePullBackOff`, `CreateContainerConfigError`, `Pending`) never connected to Discord and
/// acts on no event; a crash-looping one did run, and may have.
pub fn never_ran(pod: &Pod) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    statuses.iter().all(|cs| {
        let ran = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
            state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        };
        cs.restart_count == 0 && !ran(cs.state.as_ref()) && !ran(cs.last_state.as_ref())
    })
}

/// Why a pod is stuck (it will not become Ready without a change), or `None`.
///
/// The text is stable while the cause lasts, so the status does not churn: the kubelet alternates
/// `ErrImagePull` and `ImagePullBackOff`, and a crash-looping container is `Running` between
/// back-offs, so both are described by what stays true (the image, the last exit code).
pub fn stuck_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let name = pod.name_any();
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    status.container_statuses.as_ref()?.iter().find_map(|cs| {
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting
            .and_then(|w| w.reason.as_deref())
            .unwrap_or_default();
        let last_exit = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => {
                Some(format!("{name}: cannot pull image \"{}\"", cs.image))
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                let detail: String = waiting
                    .and_then(|w| w.message.as_deref())
                    .unwrap_or_default()
                    .chars()
                    .take(160)
                    .collect();
                Some(format!("{name}: {reason} ({detail})"))
            }
            _ if !ready && (reason == "CrashLoopBackOff" || cs.restart_count >= 2) => {
                Some(match last_exit {
                    Some(code) => format!("{name}: keeps restarting (last exit code {code})"),
                    None => format!("{name}: keeps restarting"),
                })
            }
            _ => None,
        }
    })
}

/// FNV-1a (64 bit) of the pod's labels, annotations and spec as JSON: stable across processes
/// and versions of the operator (unlike `std`'s hasher), 16 hex digits, a valid label value.
pub fn spec_hash(pod: &Pod) -> String {
    #[derive(serde::Serialize)]
    struct Hashed<'a> {
        labels: Option<&'a BTreeMap<String, String>>,
        annotations: Option<&'a BTreeMap<String, String>>,
        spec: Option<&'a PodSpec>,
    }
    let mut labels = pod.metadata.labels.clone();
    if let Some(labels) = labels.as_mut() {
        labels.remove(labels::SPEC_HASH);
    }
    let bytes = serde_json::to_vec(&Hashed {
        labels: labels.as_ref(),
        annotations: pod.metadata.annotations.as_ref(),
        spec: pod.spec.as_ref(),
    })
    .unwrap_or_default();
    fnv1a(bytes)
}

/// FNV-1a (64 bit) of `bytes`, 16 hex digits.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GatewaySpec, PodOverrides, ShardSetSpec};
    use shardset_contract::GatewayCompression;

    const IMAGE: &str = "worker:dev";

    #[test]
    fn a_new_token_changes_every_pods_hash_and_nothing_else() {
        let hashes = |digest: Option<&str>| -> Vec<String> {
            desired_pods_for_token(&basic(), IMAGE, 10, digest)
                .expect("build")
                .into_iter()
                .map(|(d, p)| {
                    assert_eq!(p.labels().get(labels::SPEC_HASH), Some(&d.hash));
                    d.hash
                })
                .collect()
        };
        let (a, b) = (hashes(Some("00aa")), hashes(Some("00bb")));
        assert_eq!(a, hashes(Some("00aa")), "stable");
        assert!(a.iter().zip(&b).all(|(x, y)| x != y), "{a:?} {b:?}");
        let without = desired_pods(&basic(), IMAGE, 10).expect("build");
        let with = desired_pods_for_token(&basic(), IMAGE, 10, Some("00aa")).expect("build");
        for ((_, p), (_, q)) in without.iter().zip(&with) {
            assert_eq!(p.spec, q.spec, "the pod itself does not change");
            assert!(!serde_json::to_string(q).expect("json").contains("00aa"));
        }
    }

    pub(crate) fn shardset(spec: serde_json::Value) -> ShardSet {
        let spec: ShardSetSpec = serde_json::from_value(spec).expect("spec");
        let mut ss = ShardSet::new("bot", spec);
        ss.metadata.namespace = Some("ns".into());
        ss.metadata.uid = Some("uid-1".into());
        ss
    }

    fn basic() -> ShardSet {
        shardset(serde_json::json!({
            "shards": 10,
            "shardsPerPod": 3,
            "intents": 513,
            "image": "worker:dev",
            "tokenSecretRef": {"name": "bot-token", "key": "token"},
            "redis": {"url": "redis://redis:6379"}
        }))
    }

    fn env_of(pod: &Pod) -> BTreeMap<String, EnvVar> {
        pod.spec.as_ref().expect("spec").containers[0]
            .env
            .clone()
            .expect("env")
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    fn value<'a>(env: &'a BTreeMap<String, EnvVar>, name: &str) -> &'a str {
        env[name].value.as_deref().expect("literal value")
    }

    #[test]
    fn ten_shards_at_three_per_pod_make_four_pods() {
        let pods = desired_pods(&basic(), IMAGE, 10).expect("build");
        let names: Vec<_> = pods.iter().map(|(d, _)| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["bot-10-0-2", "bot-10-3-5", "bot-10-6-8", "bot-10-9-9"]
        );
        let (_, last) = &pods[3];
        let env = env_of(last);
        assert_eq!(value(&env, env::SHARD_FIRST), "9");
        assert_eq!(value(&env, env::SHARD_LAST), "9");
        assert_eq!(value(&env, env::SHARD_TOTAL), "10");
        assert_eq!(value(&env, env::SHARDSET_LAYOUT), "10");
        assert_eq!(value(&env, env::DISCORD_INTENTS), "513");
        assert_eq!(value(&env, env::REDIS_URL), "redis://redis:6379");
        assert_eq!(value(&env, env::DISCORD_API_URL), "https://discord.com/api");
        assert!(!env.contains_key(env::MAX_CONCURRENCY));
        // Unset: the worker's default (zstd-stream), and the pod spec (its hash) unchanged.
        assert!(!env.contains_key(env::GATEWAY_COMPRESSION));
        let labels = last.labels();
        assert_eq!(labels[labels::SHARDSET], "bot");
        assert_eq!(labels[labels::LAYOUT], "10");
        assert_eq!(labels[labels::SHARD_FIRST], "9");
        assert_eq!(labels[labels::SHARD_LAST], "9");
        assert_eq!(labels[labels::MANAGED_BY], names::MANAGED_BY);
    }

    #[test]
    fn the_token_is_only_a_secret_key_ref() {
        let (_, pod) = desired_pods(&basic(), IMAGE, 10).expect("build").remove(0);
        let env = env_of(&pod);
        let token = &env[env::DISCORD_TOKEN];
        assert!(token.value.is_none());
        let from = token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("secretKeyRef");
        assert_eq!(
            (from.name.as_str(), from.key.as_str()),
            ("bot-token", "token")
        );
        assert_eq!(
            env[env::POD_NAME]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.name")
        );
    }

    #[test]
    fn pods_are_restricted_and_probed() {
        let (_, pod) = desired_pods(&basic(), IMAGE, 10).expect("build").remove(0);
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.automount_service_account_token, Some(false));
        let psc = spec.security_context.as_ref().expect("pod security");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let c = &spec.containers[0];
        let sc = c.security_context.as_ref().expect("container security");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        let path = |p: &Option<Probe>| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
        assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ShardSet", "uid-1")
        );
        assert_eq!(owner.controller, Some(true));
        // Evicted from a lost node after 30 s, not Kubernetes' default 300 s (see node_loss).
        let lost: Vec<(Option<&str>, Option<i64>)> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| (t.key.as_deref(), t.toleration_seconds))
            .collect();
        assert_eq!(
            lost,
            [
                (Some(node_loss::TAINT_UNREACHABLE), Some(30)),
                (Some(node_loss::TAINT_NOT_READY), Some(30))
            ]
        );
    }

    #[test]
    fn the_hash_is_stable_and_follows_the_spec() {
        let a = desired_pods(&basic(), IMAGE, 10).expect("build");
        let b = desired_pods(&basic(), IMAGE, 10).expect("build");
        assert_eq!(a[0].0.hash, b[0].0.hash);
        assert_eq!(a[0].0.hash.len(), 16);
        assert_ne!(a[0].0.hash, a[1].0.hash, "ranges differ, so do the pods");

        let c = desired_pods(&basic(), "worker:v2", 10).expect("build");
        assert_ne!(a[0].0.hash, c[0].0.hash, "a new image is drift");
        // The hash label itself is not part of the hash.
        assert_eq!(spec_hash(&a[0].1), a[0].0.hash);
    }

    /// A pod with `container_statuses` as the kubelet reports them (JSON), not Ready.
    fn with_containers(statuses: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bot-4-0-1"},
            "status": {"phase": "Pending", "containerStatuses": statuses},
        }))
        .expect("pod")
    }

    #[test]
    fn a_pod_never_ran_until_a_container_started() {
        let container = |state: serde_json::Value, last: serde_json::Value| {
            serde_json::json!([{
                "name": "worker", "image": "worker:nope", "imageID": "", "ready": false,
                "restartCount": 0, "state": state, "lastState": last,
            }])
        };
        let waiting = |reason: &str| serde_json::json!({"waiting": {"reason": reason}});
        // Never ran: image never pulled, not scheduled yet (no statuses), bad config.
        for never in [
            container(waiting("ImagePullBackOff"), serde_json::json!({})),
            container(waiting("ErrImagePull"), serde_json::json!({})),
            container(waiting("CreateContainerConfigError"), serde_json::json!({})),
            container(waiting("ContainerCreating"), serde_json::json!({})),
        ] {
            assert!(never_ran(&with_containers(never.clone())), "{never}");
        }
        let unscheduled: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}}),
        )
        .expect("pod");
        assert!(never_ran(&unscheduled));
        // Ran: running now, exited, or crash-looping after a run.
        for ran in [
            container(
                serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
                serde_json::json!({}),
            ),
            container(
                serde_json::json!({"terminated": {"exitCode": 1}}),
                serde_json::json!({}),
            ),
            container(
                waiting("CrashLoopBackOff"),
                serde_json::json!({"terminated": {"exitCode": 1}}),
            ),
        ] {
            assert!(!never_ran(&with_containers(ran.clone())), "{ran}");
        }
        // The observed pod carries it.
        let pod = with_containers(container(
            waiting("ImagePullBackOff"),
            serde_json::json!({}),
        ));
        assert!(observe(&pod, "uid-1").never_ran);
    }

    #[test]
    fn the_image_is_the_specs_else_the_operators_default() {
        let mut ss = basic();
        assert_eq!(worker_image(&ss, Some("released:1.2")), Some("worker:dev"));
        ss.spec.image = None;
        assert_eq!(
            worker_image(&ss, Some("released:1.2")),
            Some("released:1.2")
        );
        assert_eq!(worker_image(&ss, None), None);
        let (_, pod) = desired_pods(&ss, "released:1.2", 10)
            .expect("build")
            .remove(0);
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        assert_eq!(container.image.as_deref(), Some("released:1.2"));
    }

    #[test]
    fn each_layout_spreads_over_nodes_unless_the_spec_says_otherwise() {
        let spread = |ss: &ShardSet| {
            desired_pods(ss, IMAGE, 10).expect("build")[0]
                .1
                .spec
                .clone()
                .expect("spec")
                .topology_spread_constraints
        };
        let ours = spread(&basic()).expect("a default spread");
        assert_eq!(ours.len(), 1);
        let c = &ours[0];
        assert_eq!(
            (
                c.max_skew,
                c.topology_key.as_str(),
                c.when_unsatisfiable.as_str()
            ),
            (1, SPREAD_TOPOLOGY_KEY, "ScheduleAnyway")
        );
        let selector = c
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .expect("selector");
        assert_eq!(
            selector,
            BTreeMap::from([
                (labels::SHARDSET.to_owned(), "bot".to_owned()),
                (labels::LAYOUT.to_owned(), "10".to_owned()),
            ])
        );

        let mut zones = basic();
        let own = TopologySpreadConstraint {
            max_skew: 2,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..TopologySpreadConstraint::default()
        };
        zones.spec.pod = Some(PodOverrides {
            topology_spread_constraints: Some(vec![own.clone()]),
            ..PodOverrides::default()
        });
        assert_eq!(spread(&zones), Some(vec![own]), "the spec's replace ours");
        let mut none = basic();
        none.spec.pod = Some(PodOverrides {
            topology_spread_constraints: Some(Vec::new()),
            ..PodOverrides::default()
        });
        assert_eq!(spread(&none), None, "an empty list turns it off");
    }

    #[test]
    fn observing_reads_labels_ownership_and_readiness() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
        };
        let (desired, mut pod) = desired_pods(&basic(), IMAGE, 10).expect("build").remove(1);
        let seen = observe(&pod, "uid-1");
        assert!(seen.owned && !seen.ready && !seen.terminating);
        assert_eq!(seen.range, Some(desired.range));
        assert_eq!(seen.hash.as_deref(), Some(desired.hash.as_str()));
        assert_eq!(seen.layout.as_deref(), Some("10"));
        assert!(!observe(&pod, "another-uid").owned);

        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER_NAME.into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ErrImageNeverPull".into()),
                        message: Some("image not present".into()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        assert!(observe(&pod, "uid-1").ready);
        let stuck = stuck_reason(&pod);
        assert_eq!(stuck.as_deref(), Some("bot-10-3-5: cannot pull image \"\""));
        // The kubelet's back-off state reads the same, so the status does not churn.
        if let Some(cs) = pod
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            cs[0].state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ImagePullBackOff".into()),
                    message: Some("Back-off pulling image".into()),
                }),
                ..ContainerState::default()
            });
        }
        assert_eq!(stuck_reason(&pod), stuck);
    }

    #[test]
    fn a_redis_ca_bundle_is_mounted_read_only_and_named_by_redis_ca_file() {
        let plain = basic();
        let (_, pod) = desired_pods(&plain, IMAGE, 10).expect("build").remove(0);
        assert!(!env_of(&pod).contains_key(env::REDIS_CA_FILE));

        let mut ss = basic();
        ss.spec.redis.url = "rediss://redis:6379".into();
        ss.spec.redis.tls = Some(crate::crd::RedisTlsSpec {
            ca_secret_ref: crate::crd::RedisCaSecretRef {
                name: "redis-tls".into(),
                key: "ca.pem".into(),
            },
        });
        let (_, pod) = desired_pods(&ss, IMAGE, 10).expect("build").remove(0);
        let env = env_of(&pod);
        assert_eq!(
            value(&env, env::REDIS_CA_FILE),
            "/etc/shardset/redis-ca/ca.crt"
        );
        let spec = pod.spec.as_ref().expect("spec");
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "redis-ca")
            .expect("the CA volume");
        let secret = volume.secret.as_ref().expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("redis-tls"));
        let items = secret.items.as_ref().expect("one key only");
        assert_eq!(
            (items.len(), items[0].key.as_str(), items[0].path.as_str()),
            (1, "ca.pem", "ca.crt")
        );
        let mount = spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "redis-ca")
            .expect("mounted");
        assert_eq!(mount.mount_path, "/etc/shardset/redis-ca");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn optional_settings_reach_the_pod() {
        let mut ss = basic();
        ss.spec.max_concurrency = Some(16);
        ss.spec.gateway = Some(GatewaySpec {
            api_url: Some("http://fake:8080/api".into()),
            identify_window_ms: Some(500),
            compression: Some(GatewayCompression::ZlibStream),
        });
        ss.spec.handover = Some(crate::crd::HandoverSpec {
            window_ms: Some(2000),
            claim_ttl_ms: None,
        });
        ss.spec.redis.secret_ref = Some(crate::crd::RedisSecretRef {
            name: "redis".into(),
            key: "password".into(),
        });
        ss.spec.pod = Some(PodOverrides {
            labels: Some(BTreeMap::from([
                ("team".to_string(), "bots".to_string()),
                (labels::SHARDSET.to_string(), "hijack".to_string()),
            ])),
            env: Some(vec![EnvVar {
                name: "RUST_LOG".into(),
                value: Some("debug".into()),
                value_from: None,
            }]),
            priority_class_name: Some("high".into()),
            ..PodOverrides::default()
        });
        let (_, pod) = desired_pods(&ss, IMAGE, 10).expect("build").remove(0);
        let env = env_of(&pod);
        assert_eq!(value(&env, env::MAX_CONCURRENCY), "16");
        assert_eq!(value(&env, env::IDENTIFY_WINDOW_MS), "500");
        assert_eq!(value(&env, env::GATEWAY_COMPRESSION), "zlib-stream");
        assert_eq!(value(&env, env::HANDOVER_WINDOW_MS), "2000");
        assert_eq!(value(&env, env::DISCORD_API_URL), "http://fake:8080/api");
        assert_eq!(value(&env, "RUST_LOG"), "debug");
        assert!(env[env::REDIS_PASSWORD].value.is_none());
        assert_eq!(pod.labels()["team"], "bots");
        assert_eq!(pod.labels()[labels::SHARDSET], "bot", "our labels win");
        assert_eq!(
            pod.spec
                .as_ref()
                .and_then(|s| s.priority_class_name.as_deref()),
            Some("high")
        );
    }
}
