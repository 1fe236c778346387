//! Losing a worker: `docker stop` of a worker node's container makes that node NotReady, and a
//! Deployment's pod on it (with short not-ready/unreachable tolerations, as pods that must move
//! fast carry) is evicted and rescheduled on the other worker. `docker start` brings the node back
//! Ready, with working pod networking (the bridge CNI DaemonSet re-applies its routes).
//! Later fault tests (a worker pod's node lost) build on this.

use std::time::Duration;

use shardset_e2e::conditions::{self, node_of};
use shardset_e2e::nodes::StoppedNode;
use shardset_e2e::{TestNamespace, probe_pod_spec};

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

    let stopped = StoppedNode::stop(&ns, &lost)?;

    // The node-monitor grace period (~50 s) passes, then the node is no longer Ready.
    stopped.wait_not_ready().await?;

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

    // Back: the node is Ready again, and a pod on it reaches cluster DNS.
    stopped.start_whole(&ns).await?;
    Ok(())
}
