//! An image built from a Dockerfile in the repo and loaded with `kind load` (the probe) runs as a
//! Deployment whose pods reach Running and Ready on both workers, and `kubectl logs` shows their
//! output.

use std::collections::BTreeSet;
use std::time::Duration;

use shardset_e2e::{TestNamespace, conditions, probe_pod_spec};

#[tokio::test]
async fn probe_pods_run_ready_on_both_workers_and_log() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-pods").await else {
        return Ok(());
    };
    let (_, workers) = ns.nodes().await?;
    assert!(
        workers.len() >= 2,
        "the test cluster has 2 workers by default, found {workers:?}"
    );

    // One pod per worker: a hard anti-affinity on the hostname, and no toleration of the
    // control plane's taint, so both workers must take one.
    let mut spec = probe_pod_spec(&[], true);
    spec["affinity"] = serde_json::json!({"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "spread"}},
            "topologyKey": "kubernetes.io/hostname",
        }],
    }});
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "spread"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "spread"}},
            "template": {"metadata": {"labels": {"app": "spread"}}, "spec": spec},
        },
    });
    ns.apply(&deployment.to_string())?;

    let pods = ns
        .wait_pods(
            "app=spread",
            |pods| pods.len() == 2 && pods.iter().all(conditions::is_pod_ready),
            Duration::from_secs(120),
        )
        .await?;
    let nodes: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    let expected: BTreeSet<String> = workers.iter().take(2).cloned().collect();
    assert_eq!(nodes, expected, "one Ready pod on each worker");

    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let logs = ns.kubectl(&["logs", name])?;
        assert!(
            logs.contains("cluster-probe serving /healthz and /readyz on :8080")
                && logs.contains(&format!("pod={name} node={node}")),
            "kubectl logs {name}: {logs:?}"
        );
    }
    Ok(())
}
