//! The test's namespace on the kind cluster: whether a cluster is configured at all, a fresh
//! namespace per test (deleted on drop, also when the test panics), and the tools and API
//! pointed at it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::{Client, Resource};

use crate::tools::{self, helm, kubectl, tool};
use crate::{conditions, probe, random, waits};

/// Set to `1` by `make e2e`: cluster tests must run (and fail when no cluster answers).
pub const E2E_ENV: &str = "SHARDSET_E2E";
/// Set to `1` to keep test namespaces after the test (to look at what a failed test left).
pub const KEEP_ENV: &str = "SHARDSET_E2E_KEEP";
/// Label on every namespace this crate creates.
pub const E2E_LABEL: &str = "shardset.io/e2e";

/// Whether cluster tests are to run. `false` prints the loud SKIPPED line for `test`.
pub fn cluster_configured(test: &str) -> bool {
    match std::env::var(E2E_ENV).as_deref() {
        Ok("1") => true,
        _ => {
            // Straight to the process's stderr: the test harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no test cluster configured ({E2E_ENV} is not 1). \
                 Run `make e2e`, or `eval \"$(make -s cluster)\"` and {E2E_ENV}=1."
            );
            false
        }
    }
}

/// A fresh namespace on the test cluster, deleted on drop (also when the test panics).
pub struct TestNamespace {
    /// The namespace's name (`<prefix>-<random>`).
    pub name: String,
    /// A client for the cluster.
    pub client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>`; `None` (after a loud SKIPPED line) when no cluster is
    /// configured; panics with a clear message when one is configured but does not answer.
    pub async fn new(prefix: &str) -> Option<Self> {
        if !cluster_configured(prefix) {
            return None;
        }
        Some(Self::create(prefix).await.unwrap_or_else(|e| {
            panic!(
                "{E2E_ENV}=1 but the test cluster does not answer (KUBECONFIG={:?}): {e:#}. \
                 Run `make cluster` (or `make e2e`).",
                std::env::var("KUBECONFIG").unwrap_or_default()
            )
        }))
    }

    async fn create(prefix: &str) -> anyhow::Result<Self> {
        let client = Client::try_default().await.context("kube client")?;
        let suffix: String = format!("{:08x}", random::random_u64(0) as u32);
        let name = format!("{prefix}-{suffix}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        // Pods need the namespace's default service account (made by the controller-manager).
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        waits::wait_for(
            &sa,
            "default",
            |s: Option<&ServiceAccount>| s.is_some(),
            Duration::from_secs(30),
        )
        .await?;
        Ok(Self { name, client })
    }

    /// An `Api` for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// kubectl with `-n <this namespace>` and `args`.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        kubectl(&all)
    }

    /// `kubectl apply -f -` of `yaml` (YAML or JSON) in this namespace.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new(tool("kubectl"));
        cmd.args(["-n", &self.name, "apply", "-f", "-"]);
        tools::run("kubectl apply", cmd, Some(yaml))
    }

    /// `kubectl patch --type=merge` of `object` (`kind/name`) in this namespace with `patch`.
    pub fn merge_patch(&self, object: &str, patch: serde_json::Value) -> anyhow::Result<String> {
        self.kubectl(&["patch", object, "--type=merge", "-p", &patch.to_string()])
    }

    /// A real `kubectl edit` of `object` in this namespace, with `sed -e <sed_expr>` as the editor.
    pub fn kubectl_edit(&self, object: &str, sed_expr: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new(tool("kubectl"));
        cmd.args(["-n", &self.name, "edit", object])
            .env("KUBE_EDITOR", format!("sed -i -e '{sed_expr}'"));
        tools::run(&format!("kubectl edit {object}"), cmd, None)
    }

    /// All Events of the namespace as YAML text (to search them), empty when kubectl fails.
    pub fn events_yaml(&self) -> String {
        self.kubectl(&["get", "events", "-o", "yaml"])
            .unwrap_or_default()
    }

    /// helm with `--namespace <this namespace>` and `args`.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["--namespace", self.name.as_str()];
        all.extend_from_slice(args);
        helm(&all)
    }

    /// Waits until `pred` holds for this namespace's pods matching `selector`; returns them.
    pub async fn wait_pods<F>(
        &self,
        selector: &str,
        pred: F,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Pod>>
    where
        F: FnMut(&[Pod]) -> bool,
    {
        waits::wait_list(&self.api::<Pod>(), selector, pred, timeout).await
    }

    /// Runs a one-shot probe pod (`cluster-probe <args>`), optionally on `node`, waits for it to
    /// finish and returns its output (the probe prints one JSON line).
    pub async fn run_probe(
        &self,
        name: &str,
        args: &[&str],
        node: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut pod = probe::probe_pod(name, args);
        if let Some(node) = node {
            pod.spec.as_mut().context("spec")?.node_name = Some(node.to_string());
        }
        self.run_probe_pod(pod).await
    }

    /// [`TestNamespace::run_probe`] of a probe pod made by the caller (labels, env).
    pub async fn run_probe_pod(&self, pod: Pod) -> anyhow::Result<serde_json::Value> {
        let name = pod.metadata.name.clone().context("probe pod name")?;
        let name = name.as_str();
        let args = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.args.clone())
            .unwrap_or_default();
        let pods = self.api::<Pod>();
        pods.create(&PostParams::default(), &pod).await?;
        let done = waits::wait_for(
            &pods,
            name,
            conditions::pod_finished,
            Duration::from_secs(120),
        )
        .await?
        .context("pod vanished")?;
        let logs = self.logs(name).await?;
        let phase = done.status.and_then(|s| s.phase).unwrap_or_default();
        if phase != "Succeeded" {
            bail!("probe {name} {args:?} ended {phase}: {logs}");
        }
        let line = logs.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| format!("probe output {logs:?}"))
    }

    /// The pod's logs (its only container).
    pub async fn logs(&self, pod: &str) -> anyhow::Result<String> {
        Ok(self.api::<Pod>().logs(pod, &LogParams::default()).await?)
    }

    /// A stream of the pod's log lines, following (for what a pod says while it stops).
    pub async fn follow_logs(
        &self,
        pod: &str,
    ) -> anyhow::Result<impl futures_util::Stream<Item = String> + use<>> {
        use futures_util::AsyncBufReadExt;
        let reader = self
            .api::<Pod>()
            .log_stream(
                pod,
                &LogParams {
                    follow: true,
                    ..LogParams::default()
                },
            )
            .await?;
        Ok(reader.lines().filter_map(|l| async move { l.ok() }))
    }

    /// Names of the nodes by role: (control planes, workers).
    pub async fn nodes(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let (cp, workers): (Vec<_>, Vec<_>) = nodes.items.into_iter().partition(|n| {
            n.metadata
                .labels
                .as_ref()
                .is_some_and(|l: &BTreeMap<String, String>| {
                    l.contains_key("node-role.kubernetes.io/control-plane")
                })
        });
        let names = |v: Vec<Node>| {
            v.into_iter()
                .filter_map(|n| n.metadata.name)
                .collect::<Vec<_>>()
        };
        Ok((names(cp), names(workers)))
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // What the namespace held: the test harness shows captured output only when the test
        // failed (by a panic or by returning an error), so this costs nothing on success.
        if let Ok(out) = kubectl(&["-n", &self.name, "get", "all,events", "-o", "wide"]) {
            eprintln!(
                "--- namespace {} at the end of the test ---\n{out}",
                self.name
            );
        }
        if std::env::var(KEEP_ENV).as_deref() == Ok("1") {
            eprintln!("keeping namespace {} ({KEEP_ENV}=1)", self.name);
            return;
        }
        // Synchronous (Drop cannot await) and without waiting for the finalizers to finish.
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}
