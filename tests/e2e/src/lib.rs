//! Helpers for tests on the kind test cluster (`make cluster`).
//!
//! The cluster is made once per test run (by `make e2e`, or `eval "$(make -s cluster)"` by hand), not
//! per test. Each test takes a fresh namespace on it and works there; the namespace is deleted when
//! the test ends, also when it fails (a `Drop` guard), so tests run in parallel without seeing each
//! other.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::Pod;
//! use shardset_e2e::{TestNamespace, conditions};
//! use std::time::Duration;
//!
//! // None (and a loud SKIPPED line on stderr) when no cluster is configured, see below.
//! let Some(ns) = TestNamespace::new("my-scenario").await else { return Ok(()) };
//! let pods = ns.api::<Pod>();
//! pods.create(&Default::default(), &shardset_e2e::probe_pod("p", &[])).await?;
//! ns.wait_for(&pods, "p", conditions::pod_ready, Duration::from_secs(60)).await?;
//! let logs = ns.kubectl(&["logs", "p"])?;          // kubectl from the harness, -n <ns> added
//! # Ok(()) }
//! ```
//!
//! # Is a cluster configured?
//! [`E2E_ENV`] (`SHARDSET_E2E`) decides, and `make e2e` sets it:
//! - unset: every cluster test is **skipped loudly** (a `SKIPPED ...` line on the real stderr, not
//!   hidden by the test harness's capture), so `cargo test` on a machine without Docker still works;
//! - `1`: a cluster **must** answer: `KUBECONFIG` names it (printed by `make -s cluster`); if it does
//!   not answer, the test fails with a message that says so. Never a silent pass.
//!
//! # What is here
//! - [`TestNamespace`]: a namespace (labelled [`E2E_LABEL`]), its [`kube::Client`], `api::<K>()`,
//!   `kubectl`/`apply`/`helm` run from the harness's bin dir against it, `wait_for` (watch-based),
//!   `wait_pods` (a watch on a label selector until a predicate holds), `logs`/`follow_logs`,
//!   `run_probe` (a one-shot probe pod, optionally on a given node; its JSON answer), `nodes`
//!   (control planes, workers). On drop it prints `kubectl get all,events` of the namespace to the
//!   captured output (shown only when the test failed) and deletes it ([`KEEP_ENV`] keeps it).
//! - [`wait_for`], [`wait_list`], [`delete_and_wait`] for objects outside the namespace (Nodes, ...).
//! - [`conditions`]: predicates for `wait_for` (pod ready, phase, node ready, ...).
//! - [`probe_pod`]: a pod spec running `shardset/cluster-probe:dev` (see tests/cluster/probe) with
//!   the restricted security context our pods use; [`PROBE_IMAGE`].
//! - [`kubectl`], [`helm`], [`docker`]: the harness's own binaries (never the system's kubectl).
//! - [`shardsets`]: waits on ShardSets and their pods, `kubectl edit` driven by `sed`.
//!
//! No sleeps as synchronisation: waits watch the API until the condition holds or the timeout ends.

pub mod shardsets;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// Set to `1` by `make e2e`: cluster tests must run (and fail when no cluster answers).
pub const E2E_ENV: &str = "SHARDSET_E2E";
/// The harness's bin dir (kind, kubectl, helm); `make e2e` sets it, else they are looked up on PATH.
pub const BIN_DIR_ENV: &str = "SHARDSET_BIN_DIR";
/// Set to `1` to keep test namespaces after the test (to look at what a failed test left).
pub const KEEP_ENV: &str = "SHARDSET_E2E_KEEP";
/// Label on every namespace this crate creates.
pub const E2E_LABEL: &str = "shardset.io/e2e";
/// The probe image `make images` builds and loads.
pub const PROBE_IMAGE: &str = "shardset/cluster-probe:dev";

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

/// A program from the harness's bin dir, or from PATH.
pub fn tool(name: &str) -> PathBuf {
    match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(name),
    }
}

fn run(mut cmd: Command, stdin: Option<&str>) -> anyhow::Result<Output> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("start {shown}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("run {shown}"))?;
    Ok(out)
}

fn ok_stdout(what: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the harness's kubectl with `args`; its stdout, or an error holding its stderr.
pub fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.args(args);
    ok_stdout(&format!("kubectl {}", args.join(" ")), run(cmd, None)?)
}

/// Runs the harness's helm with `args`; its stdout, or an error holding its stderr.
pub fn helm(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(tool("helm"));
    cmd.args(args);
    ok_stdout(&format!("helm {}", args.join(" ")), run(cmd, None)?)
}

/// Runs docker with `args` (node-level scenarios: stop or start a kind node).
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    ok_stdout(&format!("docker {}", args.join(" ")), run(cmd, None)?)
}

/// Waits until `cond` holds for the object `name` (watch-based), up to `timeout`; returns it.
pub async fn wait_for<K, C>(
    api: &Api<K>,
    name: &str,
    cond: C,
    timeout: Duration,
) -> anyhow::Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    C: Condition<K>,
{
    tokio::time::timeout(timeout, await_condition(api.clone(), name, cond))
        .await
        .map_err(|_| {
            anyhow!(
                "timed out after {:?} waiting on {} {name}",
                timeout,
                K::kind(&Default::default())
            )
        })?
        .with_context(|| format!("watching {} {name}", K::kind(&Default::default())))
}

/// Waits until `pred` holds for the set of objects matching `selector` (a watch on the
/// list, checked after every change), up to `timeout`; returns that set.
pub async fn wait_list<K, F>(
    api: &Api<K>,
    selector: &str,
    mut pred: F,
    timeout: Duration,
) -> anyhow::Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
    F: FnMut(&[K]) -> bool,
{
    use kube::runtime::watcher::Event;
    let cfg = watcher::Config::default().labels(selector);
    let mut stream = std::pin::pin!(watcher(api.clone(), cfg));
    let waiting = async {
        // The objects by uid, as the watch reports them; the predicate is checked once the
        // initial list is complete and after every change.
        let mut seen: BTreeMap<String, K> = BTreeMap::new();
        let mut listing: BTreeMap<String, K> = BTreeMap::new();
        let uid = |o: &K| o.meta().uid.clone().unwrap_or_default();
        loop {
            let changed = match stream.try_next().await {
                Ok(Some(Event::Init)) => {
                    listing.clear();
                    false
                }
                Ok(Some(Event::InitApply(o))) => {
                    listing.insert(uid(&o), o);
                    false
                }
                Ok(Some(Event::InitDone)) => {
                    seen = std::mem::take(&mut listing);
                    true
                }
                Ok(Some(Event::Apply(o))) => {
                    seen.insert(uid(&o), o);
                    true
                }
                Ok(Some(Event::Delete(o))) => {
                    seen.remove(&uid(&o));
                    true
                }
                Ok(None) => bail!("watch ended"),
                Err(e) => bail!("watch failed: {e}"),
            };
            if changed {
                let objs: Vec<K> = seen.values().cloned().collect();
                if pred(&objs) {
                    return Ok(objs);
                }
            }
        }
    };
    tokio::time::timeout(timeout, waiting).await.map_err(|_| {
        anyhow!(
            "timed out after {:?} waiting on {}s matching {selector:?}",
            timeout,
            K::kind(&Default::default())
        )
    })?
}

/// Predicates for [`wait_for`] and [`wait_list`].
pub mod conditions {
    use super::*;

    /// The pod's Ready condition is True.
    pub fn pod_ready(pod: Option<&Pod>) -> bool {
        pod.is_some_and(is_pod_ready)
    }

    /// For lists: the pod is Running and Ready.
    pub fn is_pod_ready(pod: &Pod) -> bool {
        pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    }

    /// The pod reached a terminal phase (Succeeded or Failed).
    pub fn pod_finished(pod: Option<&Pod>) -> bool {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
    }

    /// The node's Ready condition has `status` ("True", "False" or "Unknown").
    pub fn node_ready_is(status: &'static str) -> impl Fn(Option<&Node>) -> bool + Clone {
        move |node: Option<&Node>| {
            node.and_then(|n| n.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == status)
        }
    }

    /// The object is gone.
    pub fn gone<K>(obj: Option<&K>) -> bool {
        obj.is_none()
    }
}

/// A pod running the probe image (`shardset/cluster-probe:dev`) with `args` (none: serve
/// `/healthz` and `/readyz` on 8080), restricted security, `POD_NAME`/`NODE_NAME` in its env, and
/// `restartPolicy: Never` when `args` is a one-shot mode.
pub fn probe_pod(name: &str, args: &[&str]) -> Pod {
    let serving = args.is_empty() || args[0] == "serve";
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": probe_pod_spec(args, serving),
    }))
    .expect("a valid pod")
}

/// The pod spec of [`probe_pod`], for Deployments and other templates.
pub fn probe_pod_spec(args: &[&str], serving: bool) -> serde_json::Value {
    let mut container = serde_json::json!({
        "name": "probe",
        "image": PROBE_IMAGE,
        "imagePullPolicy": "Never",
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "securityContext": {
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if serving {
        container["ports"] = serde_json::json!([{"containerPort": 8080, "name": "http"}]);
        container["readinessProbe"] = serde_json::json!({
            "httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1,
        });
    }
    serde_json::json!({
        "restartPolicy": if serving { "Always" } else { "Never" },
        "containers": [container],
    })
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
        let suffix: String = format!("{:08x}", rand_u32());
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
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for(
            &sa,
            "default",
            |s: Option<&k8s_openapi::api::core::v1::ServiceAccount>| s.is_some(),
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
        ok_stdout("kubectl apply", run(cmd, Some(yaml))?)
    }

    /// helm with `--namespace <this namespace>` and `args`.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["--namespace", self.name.as_str()];
        all.extend_from_slice(args);
        helm(&all)
    }

    /// [`wait_for`] on an object of this namespace.
    pub async fn wait_for<K, C>(
        &self,
        api: &Api<K>,
        name: &str,
        cond: C,
        timeout: Duration,
    ) -> anyhow::Result<Option<K>>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
        K::DynamicType: Default,
        C: Condition<K>,
    {
        wait_for(api, name, cond, timeout).await
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
        wait_list(&self.api::<Pod>(), selector, pred, timeout).await
    }

    /// Runs a one-shot probe pod (`cluster-probe <args>`), optionally on `node`, waits for it to
    /// finish and returns its output (the probe prints one JSON line).
    pub async fn run_probe(
        &self,
        name: &str,
        args: &[&str],
        node: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut pod = probe_pod(name, args);
        if let Some(node) = node {
            pod.spec.as_mut().context("spec")?.node_name = Some(node.to_string());
        }
        let pods = self.api::<Pod>();
        pods.create(&PostParams::default(), &pod).await?;
        let done = self
            .wait_for(
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

/// Deletes an object and waits until it is gone.
pub async fn delete_and_wait<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    api.delete(name, &DeleteParams::default()).await?;
    wait_for(api, name, conditions::gone, timeout).await?;
    Ok(())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}
