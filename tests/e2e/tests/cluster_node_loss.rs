//! Losing a worker: `docker stop` of a worker node's container makes that node NotReady, and a
//! Deployment's pod on it (with short not-ready/unreachable tolerations, as pods that must move
//! fast carry) is evicted and rescheduled on the other worker. `docker start` brings the node back
//! Ready, with working pod networking (the bridge CNI DaemonSet re-applies its routes).
//! Later fault tests (a worker pod's node lost) build on this.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use shardset_e2e::{TestNamespace, conditions, docker, probe_pod_spec};

/// Starts the node's container again when dropped, also when the test fails half-way.
struct RestartNode(String);
impl Drop for RestartNode {
    fn drop(&mut self) {
        let _ = docker(&["start", &self.0]);
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

#[tokio::test]
async fn stopped_worker_goes_not_ready_and_its_pod_moves() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-node-loss").await else {
        return Ok(());
    };
    let (_, workers) = ns.nodes().await?;
    assert!(workers.len() >= 2, "needs two workers, found {workers:?}");
    let (lost, other) = (workers[0].clone(), workers[1].clone());

    // Prefer the worker we are about to stop; leave in 5 s once it is not ready or unreachable.
    let mut spec = probe_pod_spec(&[], true);
    spec["affinity"] = serde_json::json!({"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [lost]}],
        }}],
    }});
    spec["tolerations"] = serde_json::json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
    ]);
    ns.apply(
        &serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mover"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "mover"}},
                     "template": {"metadata": {"labels": {"app": "mover"}}, "spec": spec}},
        })
        .to_string(),
    )?;
    let before = ns
        .wait_pods(
            "app=mover",
            |p| p.len() == 1 && conditions::is_pod_ready(&p[0]),
            Duration::from_secs(90),
        )
        .await?;
    assert_eq!(
        node_of(&before[0]),
        Some(lost.as_str()),
        "pod placed on {lost}"
    );

    let nodes: Api<Node> = Api::all(ns.client.clone());
    let _restart = RestartNode(lost.clone());
    docker(&["stop", &lost])?;

    // The node-monitor grace period (~50 s) passes, then the node is no longer Ready.
    shardset_e2e::wait_for(
        &nodes,
        &lost,
        |n: Option<&Node>| !conditions::node_ready_is("True")(n),
        Duration::from_secs(180),
    )
    .await?;

    // Evicted after its 5 s tolerations; the Deployment's new pod runs on the other worker.
    let after = ns
        .wait_pods(
            "app=mover",
            |pods| {
                pods.iter().any(|p| {
                    node_of(p) == Some(other.as_str())
                        && conditions::is_pod_ready(p)
                        && p.metadata.deletion_timestamp.is_none()
                })
            },
            Duration::from_secs(180),
        )
        .await?;
    assert!(
        after
            .iter()
            .filter(|p| node_of(p) == Some(lost.as_str()))
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "the pod on the lost node was evicted"
    );

    // Back: the node is Ready again, and a pod on it reaches cluster DNS once its kube-proxy and
    // bridge-cni pods have restarted with the node (rules and routes re-applied; the probe retries).
    docker(&["start", &lost])?;
    shardset_e2e::wait_for(
        &nodes,
        &lost,
        conditions::node_ready_is("True"),
        Duration::from_secs(180),
    )
    .await?;
    let resolved = ns
        .run_probe(
            "dns-on-returned-node",
            &[
                "dns",
                "kubernetes.default.svc.cluster.local",
                "--wait",
                "90",
            ],
            Some(&lost),
        )
        .await?;
    assert_eq!(
        resolved["addresses"].as_array().map(Vec::len),
        Some(1),
        "DNS from the returned node: {resolved}"
    );
    Ok(())
}
