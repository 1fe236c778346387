//! What the stack's containers use, from the kubelets' Summary API (`/stats/summary`, reached
//! through the API server's node proxy, as `kubectl get --raw` would): the same figures
//! metrics-server reads, without installing it. CPU is a cumulative counter (core-nanoseconds),
//! so a rate comes from two readings; memory is the working set at the reading.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;

/// One container's counters at one reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ContainerUsage {
    /// CPU used since the container started, in core-seconds.
    pub cpu_s: f64,
    /// Working set (what the kubelet evicts and OOM-kills on), in bytes.
    pub working_set_bytes: u64,
}

/// Every container of namespace `ns` on every node, keyed `<pod>/<container>`.
pub async fn containers(
    client: &Client,
    ns: &str,
) -> anyhow::Result<BTreeMap<String, ContainerUsage>> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut found = BTreeMap::new();
    for node in nodes.items {
        let path = format!("/api/v1/nodes/{}/proxy/stats/summary", node.name_any());
        let req = http::Request::get(path).body(Vec::new())?;
        let summary: Summary = serde_json::from_str(&client.request_text(req).await?)?;
        found.extend(of_namespace(summary, ns));
    }
    Ok(found)
}

/// The containers of namespace `ns` in one node's summary.
fn of_namespace(summary: Summary, ns: &str) -> impl Iterator<Item = (String, ContainerUsage)> {
    summary
        .pods
        .into_iter()
        .filter(move |p| p.pod_ref.namespace == ns)
        .flat_map(|p| {
            let pod = p.pod_ref.name;
            p.containers.into_iter().map(move |c| {
                let usage = ContainerUsage {
                    cpu_s: c.cpu.and_then(|u| u.usage_core_nano_seconds).unwrap_or(0) as f64 / 1e9,
                    working_set_bytes: c.memory.and_then(|m| m.working_set_bytes).unwrap_or(0),
                };
                (format!("{pod}/{}", c.name), usage)
            })
        })
}

/// The parts of the kubelet's `stats/summary` answer read here (k8s.io/kubelet's
/// `pkg/apis/stats/v1alpha1`).
#[derive(Debug, Deserialize)]
struct Summary {
    #[serde(default)]
    pods: Vec<PodStats>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStats {
    pod_ref: PodRef,
    #[serde(default)]
    containers: Vec<ContainerStats>,
}

#[derive(Debug, Deserialize)]
struct PodRef {
    name: String,
    namespace: String,
}

#[derive(Debug, Deserialize)]
struct ContainerStats {
    name: String,
    cpu: Option<CpuStats>,
    memory: Option<MemoryStats>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpuStats {
    usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemoryStats {
    working_set_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_containers_of_one_namespace() {
        // Trimmed from a kubelet v1.36 answer.
        let summary: Summary = serde_json::from_str(
            r#"{"node": {"nodeName": "w1"}, "pods": [
              {"podRef": {"name": "op-0", "namespace": "a", "uid": "u"},
               "containers": [{"name": "operator", "cpu": {"usageCoreNanoSeconds": 2500000000},
                               "memory": {"workingSetBytes": 1048576, "rssBytes": 900000}}]},
              {"podRef": {"name": "other", "namespace": "b", "uid": "v"},
               "containers": [{"name": "x", "cpu": {"usageCoreNanoSeconds": 1}}]},
              {"podRef": {"name": "new", "namespace": "a", "uid": "w"},
               "containers": [{"name": "c"}]}
            ]}"#,
        )
        .expect("a summary");
        let found: BTreeMap<_, _> = of_namespace(summary, "a").collect();
        assert_eq!(found.len(), 2);
        assert_eq!(
            found["op-0/operator"],
            ContainerUsage {
                cpu_s: 2.5,
                working_set_bytes: 1_048_576
            }
        );
        assert_eq!(found["new/c"], ContainerUsage::default());
    }
}
