//! A lost node: a kind node's container stopped with `docker stop`, and started again (by the
//! scenario, or on drop when it fails half-way) so that later tests find the cluster whole; and a
//! drained node, uncordoned the same way. Scenarios that stop or drain a node run alone in their
//! test binary.

use std::time::Duration;

use anyhow::ensure;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::{TestNamespace, conditions, docker, kubectl, wait_for};

/// How long a node may take to change its Ready condition: the node-monitor grace period (~50 s)
/// and, coming back, the kubelet's start.
const NODE_READY_WITHIN: Duration = Duration::from_secs(180);

/// A node whose container was stopped; started again on drop.
pub struct StoppedNode {
    /// The node's name (its container's name).
    pub name: String,
    nodes: Api<Node>,
}

impl StoppedNode {
    /// `docker stop` of the node `name`.
    pub fn stop(ns: &TestNamespace, name: &str) -> anyhow::Result<Self> {
        let node = Self {
            name: name.to_owned(),
            nodes: Api::all(ns.client.clone()),
        };
        docker(&["stop", name])?;
        Ok(node)
    }

    /// Waits until the node is no longer Ready.
    pub async fn wait_not_ready(&self) -> anyhow::Result<()> {
        wait_for(
            &self.nodes,
            &self.name,
            |n: Option<&Node>| !conditions::node_ready_is("True")(n),
            NODE_READY_WITHIN,
        )
        .await?;
        Ok(())
    }

    /// `docker start` of the node; waits until it is Ready, and until a pod on it reaches cluster
    /// DNS (its kube-proxy and bridge-cni pods restart with the node and re-apply their rules and
    /// routes; the probe retries for up to 90 s).
    pub async fn start_whole(&self, ns: &TestNamespace) -> anyhow::Result<()> {
        docker(&["start", &self.name])?;
        wait_for(
            &self.nodes,
            &self.name,
            conditions::node_ready_is("True"),
            NODE_READY_WITHIN,
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
                Some(&self.name),
            )
            .await?;
        ensure!(
            resolved["addresses"].as_array().map(Vec::len) == Some(1),
            "DNS from the returned node: {resolved}"
        );
        Ok(())
    }
}

impl Drop for StoppedNode {
    fn drop(&mut self) {
        // Also after `start_whole`: starting a running container changes nothing.
        let _ = docker(&["start", &self.name]);
    }
}

/// A node drained with `kubectl drain` (cordoned, its pods evicted through the Eviction API, so
/// PodDisruptionBudgets hold); uncordoned by [`DrainedNode::uncordon`] or on drop.
pub struct DrainedNode {
    /// The node's name.
    pub name: String,
    uncordoned: bool,
}

impl DrainedNode {
    /// `kubectl drain` of `name`, evicting only the pods `selector` matches (the scenario's own;
    /// the cluster's DNS and storage pods stay), waiting up to `timeout` for every eviction (a
    /// budget that refuses one is retried by kubectl every 5 s).
    pub fn drain(name: &str, selector: &str, timeout: Duration) -> anyhow::Result<Self> {
        let node = Self {
            name: name.to_owned(),
            uncordoned: false,
        };
        kubectl(&[
            "drain",
            name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--pod-selector",
            selector,
            "--timeout",
            &format!("{}s", timeout.as_secs()),
        ])?;
        Ok(node)
    }

    /// `kubectl uncordon`: the node takes pods again.
    pub fn uncordon(mut self) -> anyhow::Result<()> {
        self.uncordoned = true;
        kubectl(&["uncordon", &self.name])?;
        Ok(())
    }
}

impl Drop for DrainedNode {
    fn drop(&mut self) {
        if !self.uncordoned {
            let _ = kubectl(&["uncordon", &self.name]);
        }
    }
}
