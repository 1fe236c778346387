//! DNS and Service traffic across nodes: a Service whose pod runs on one worker is resolved by
//! name (CoreDNS) from a pod on the other worker, and its `/healthz` answers through the Service
//! IP (kube-proxy, the bridge CNI's routes between nodes).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::PostParams;
use shardset_e2e::{TestNamespace, conditions, probe_pod, wait_for};

#[tokio::test]
async fn service_resolves_and_answers_from_another_node() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-dns").await else {
        return Ok(());
    };
    let (_, workers) = ns.nodes().await?;
    assert!(workers.len() >= 2, "needs two workers, found {workers:?}");
    let (server_node, client_node) = (&workers[0], &workers[1]);

    let mut server = probe_pod("server", &[]);
    server.spec.as_mut().expect("spec").node_name = Some(server_node.clone());
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &server).await?;
    ns.apply(
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}}"#,
    )?;
    wait_for(
        &pods,
        "server",
        conditions::pod_ready,
        Duration::from_secs(90),
    )
    .await?;
    let cluster_ip = ns
        .api::<Service>()
        .get("web")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP Service");

    let fqdn = format!("web.{}.svc.cluster.local", ns.name);
    let resolved = ns
        .run_probe("resolve", &["dns", &fqdn], Some(client_node))
        .await?;
    assert_eq!(
        resolved["addresses"],
        serde_json::json!([cluster_ip]),
        "{fqdn} from {client_node}: {resolved}"
    );

    let answered = ns
        .run_probe(
            "fetch",
            &["get", &format!("{fqdn}:80"), "/healthz"],
            Some(client_node),
        )
        .await?;
    assert_eq!(
        answered["status"], 200,
        "GET /healthz through the Service from {client_node} to {server_node}: {answered}"
    );
    Ok(())
}
