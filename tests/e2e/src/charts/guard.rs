//! What guards the chart's Redis and the worker pods (issue 11, items 2 and 18), seen from probe
//! pods in the stack's namespace once a ShardSet serves:
//! - the NetworkPolicies are there: the operator's and the Redis's from the chart, the workers'
//!   from the operator (owned by the ShardSet, TCP egress only to 443, Redis's port and the fake's);
//! - Redis answers a pod that carries the worker labels `NOAUTH` without the password and `PONG`
//!   with it (by `secretKeyRef`, as the workers get it);
//! - where the cluster's CNI enforces NetworkPolicy: a pod without the worker labels cannot even
//!   connect to Redis, and a pod selected by the workers' policy reaches DNS, Redis and the fake
//!   but not a server on a port the policy does not name, which a pod without it does reach.
//!   The test cluster's bridge CNI does not enforce NetworkPolicy (README, "Test cluster"): then
//!   the scenario says so in its report and checks the rest.

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use super::stack::{FAKE_RELEASE, OPERATOR_RELEASE, REDIS_SECRET, Stack};
use crate::probe::probe_pod;
use crate::report;

/// The port of the control server no worker may reach.
const UNNAMED_PORT: u16 = 9090;

/// A one-shot probe `name` running `args`, with `labels`, and the chart's Redis password in
/// `REDIS_PASSWORD` (by `secretKeyRef`) when `password`.
fn probe(name: &str, args: &[&str], labels: &Value, password: bool) -> anyhow::Result<Pod> {
    let mut pod = serde_json::to_value(probe_pod(name, args))?;
    pod["metadata"]["labels"] = labels.clone();
    if password {
        let env = pod["spec"]["containers"][0]["env"]
            .as_array_mut()
            .context("env")?;
        env.push(json!({
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": REDIS_SECRET, "key": "password"}},
        }));
    }
    Ok(serde_json::from_value(pod)?)
}

/// Checks the guards of the ShardSet `shardset`, running now (see the module doc).
pub async fn check_guards(stack: &Stack<'_>, shardset: &str) -> anyhow::Result<()> {
    let ns = stack.ns;
    let policies = ns.api::<NetworkPolicy>();
    for name in [
        OPERATOR_RELEASE.to_owned(),
        format!("{OPERATOR_RELEASE}-redis"),
    ] {
        policies
            .get(&name)
            .await
            .with_context(|| format!("the chart's NetworkPolicy {name}"))?;
    }
    let workers = policies
        .get(shardset)
        .await
        .context("the operator's NetworkPolicy for the worker pods")?;
    ensure!(
        workers
            .owner_references()
            .iter()
            .any(|o| o.kind == "ShardSet" && o.name == shardset),
        "{workers:?}"
    );
    let egress = serde_json::to_value(&workers.spec)?["egress"].clone();
    let tcp: Vec<u64> = egress[1]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    ensure!(tcp == [443, 6379, 8080], "worker egress: {egress}");

    // A server on a port no worker policy names, and pods with and without the worker labels.
    let pods = ns.api::<Pod>();
    let port = UNNAMED_PORT.to_string();
    let mut server = serde_json::to_value(probe(
        "guard-server",
        &["serve", "--port", &port],
        &json!({}),
        false,
    )?)?;
    // Served and probed on that port (the probe image's default is 8080, which the fake uses).
    let container = &mut server["spec"]["containers"][0];
    container["ports"][0]["containerPort"] = json!(UNNAMED_PORT);
    container["readinessProbe"]["httpGet"]["port"] = json!(UNNAMED_PORT);
    let server: Pod = serde_json::from_value(server)?;
    pods.create(&PostParams::default(), &server).await?;
    let ready = crate::waits::wait_for(
        &pods,
        "guard-server",
        |p: Option<&Pod>| p.is_some_and(crate::conditions::is_pod_ready),
        std::time::Duration::from_secs(120),
    )
    .await?
    .context("guard-server vanished")?;
    let server_ip = ready
        .status
        .and_then(|s| s.pod_ip)
        .context("guard-server has no IP")?;
    let server_addr = format!("{server_ip}:{UNNAMED_PORT}");
    let redis = format!("{OPERATOR_RELEASE}-redis:6379");
    let fake = format!("{FAKE_RELEASE}:8080");
    let worker = json!({
        "app.kubernetes.io/name": "shard-worker",
        "app.kubernetes.io/managed-by": "shardset-operator",
        "app.kubernetes.io/instance": shardset,
        "shardset.io/shardset": shardset,
    });
    let none = json!({"app": "guard"});
    let runs = [
        probe("guard-outsider-redis", &["redis", &redis], &none, true)?,
        probe(
            "guard-outsider-server",
            &["get", &server_addr, "/healthz"],
            &none,
            false,
        )?,
        probe("guard-worker-nopass", &["redis", &redis], &worker, false)?,
        probe("guard-worker-redis", &["redis", &redis], &worker, true)?,
        probe(
            "guard-worker-dns",
            &["dns", FAKE_RELEASE, "--wait", "10"],
            &worker,
            false,
        )?,
        probe(
            "guard-worker-fake",
            &["get", &fake, "/api/gateway/bot"],
            &worker,
            false,
        )?,
        probe(
            "guard-worker-server",
            &["get", &server_addr, "/healthz"],
            &worker,
            false,
        )?,
    ];
    let names: Vec<String> = runs.iter().map(ResourceExt::name_any).collect();
    let results =
        futures_util::future::join_all(runs.into_iter().map(|p| ns.run_probe_pod(p))).await;
    // Gone before anything counts the ShardSet's pods again: they carry its labels.
    for name in names.iter().map(String::as_str).chain(["guard-server"]) {
        let _ = pods.delete(name, &DeleteParams::default()).await;
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, result) in names.iter().zip(results) {
        out.insert(
            name.as_str(),
            result.with_context(|| format!("probe {name}"))?,
        );
    }
    let seen = |name: &str| out.get(name).cloned().unwrap_or_default();

    // The password: whatever the CNI does.
    let nopass = seen("guard-worker-nopass");
    ensure!(
        nopass["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("-NOAUTH")),
        "Redis without the password: {nopass}"
    );
    let with = seen("guard-worker-redis");
    ensure!(with["reply"] == "+PONG", "Redis with the password: {with}");
    let dns = seen("guard-worker-dns");
    ensure!(
        dns["addresses"].as_array().is_some_and(|a| !a.is_empty()),
        "a worker resolves names: {dns}"
    );
    let to_fake = seen("guard-worker-fake");
    ensure!(
        to_fake["status"].as_u64().unwrap_or(0) > 0,
        "a worker reaches the fake: {to_fake}"
    );
    let control = seen("guard-outsider-server");
    ensure!(
        control["status"] == 200,
        "the control server answers a pod without policy: {control}"
    );

    // The NetworkPolicies: only where they are enforced.
    let outsider = seen("guard-outsider-redis");
    let blocked_server = seen("guard-worker-server");
    if outsider["connected"] == true {
        ensure!(
            blocked_server["status"] == 200,
            "an unlabelled pod reached Redis, so NetworkPolicy is not enforced here, yet a worker's egress was blocked: {blocked_server}"
        );
        report!(
            "NOT VERIFIED: this cluster's CNI does not enforce NetworkPolicy (a pod without the worker labels connected to Redis; it got {}); only the password was seen to guard Redis",
            outsider["reply"]
        );
    } else {
        ensure!(
            blocked_server["status"] == 0,
            "a worker reached a port its policy does not name: {blocked_server}"
        );
        report!(
            "NetworkPolicy enforced: a pod without the worker labels cannot connect to Redis ({}), a worker cannot reach port {UNNAMED_PORT} ({}), but reaches DNS, Redis and the fake",
            outsider["error"],
            blocked_server["error"]
        );
    }
    Ok(())
}
