//! Shared by the end-to-end scenarios (`tests/e2e_*.rs`): what a user installs, installed the way
//! a user installs it, in the test's namespace, and the evidence the scenarios assert on.
//!
//! - [`Stack::install`]: the token Secret (`kubectl apply`), the CRD, `helm install` of
//!   `charts/shardset-operator` (two leader-elected replicas under the chart's service account and
//!   RBAC, watching only this namespace, with the chart's Redis) and of `charts/fake-discord`
//!   (reading the same Secret), both with `--wait`. Scenario sizes stay small and the fake's
//!   Identify window short (500 ms, `max_concurrency` 16) so that layouts start in seconds.
//! - [`Fake`]: the fake Discord's control API through the API server's service proxy (as
//!   `kubectl get --raw` would reach it): Identify log, sessions, violations.
//! - [`Stack::redis_keys`]: the bot's keys in the chart's Redis, through a port-forward.
//! - [`LogCollector`]: follows the logs of every pod of the namespace from the moment it runs
//!   (pods deleted during the run included), for the "no token anywhere" and "no `forbidden`"
//!   sweeps of [`Stack::finish`].
//!
//! On drop, [`Stack`] deletes the ShardSets while the operator still runs (so the finalizer can
//! finish), then removes any finalizer left, so the namespace can always go.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fake_discord::control::{IdentifyRecord, SessionInfo, Violation};
use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use shardset_e2e::{TestNamespace, kubectl};
use tokio::task::JoinHandle;

/// The operator chart's release name: its Redis Service is `shardset-operator-redis`, its metrics
/// Service `shardset-operator-metrics`.
pub const OPERATOR_RELEASE: &str = "shardset-operator";
/// The fake Discord chart's release name, also its Service name.
pub const FAKE_RELEASE: &str = "fake-discord";
/// The Secret holding the bot token, read by the ShardSet and by the fake Discord.
pub const TOKEN_SECRET: &str = "bot-token";
/// The worker image `make images` builds.
pub const WORKER_IMAGE: &str = "shardset/shard-worker:dev";
/// Guilds the fake's bot is in.
pub const GUILDS: u32 = 400;
/// The fake's Identify window (ms) and the ShardSet's `spec.gateway.identifyWindowMs`.
pub const IDENTIFY_WINDOW_MS: u32 = 500;
/// The fake's `max_concurrency`.
pub const MAX_CONCURRENCY: u32 = 16;

/// What `kubectl get -o yaml` gathers for the token sweep (Secrets excepted: they hold it).
const SWEPT_KINDS: &str = "shardsets,pods,deployments,replicasets,services,endpointslices,leases,\
                           serviceaccounts,roles,rolebindings,configmaps";

/// Where the stack's own pods (operator, Redis, fake Discord) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Anywhere,
    /// On the control-plane node (tolerating its taint), so that a scenario can stop a worker
    /// node without taking Redis, the fake or the operator with it.
    ControlPlane,
}

/// A token unique to this run: long, random, and easy to search for.
pub fn fresh_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut parts = Vec::new();
    for i in 0..3u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        parts.push(format!("{:016x}", h.finish()));
    }
    format!("e2e{}.{}.{}", parts[0], parts[1], parts[2])
}

/// Applies the generated CRD (once per test binary), as after a chart upgrade.
fn apply_crd() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../crds/shardset.io_shardsets.yaml"
        );
        kubectl(&["apply", "--server-side", "--force-conflicts", "-f", path])
            .and_then(|_| {
                kubectl(&[
                    "wait",
                    "--for=condition=Established",
                    "crd/shardsets.shardset.io",
                    "--timeout=60s",
                ])
            })
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn chart(name: &str) -> String {
    format!("{}/../../charts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `--set` arguments placing a chart's pods (value prefix `prefix`) on the control plane.
fn control_plane_values(prefix: &str) -> Vec<String> {
    vec![
        format!("--set-string={prefix}nodeSelector.node-role\\.kubernetes\\.io/control-plane="),
        format!("--set={prefix}tolerations[0].key=node-role.kubernetes.io/control-plane"),
        format!("--set={prefix}tolerations[0].operator=Exists"),
        format!("--set={prefix}tolerations[0].effect=NoSchedule"),
    ]
}

/// The operator chart, its Redis and the fake Discord chart, installed in one test namespace.
pub struct Stack<'a> {
    pub ns: &'a TestNamespace,
    /// The bot token the fake accepts (in the Secret [`TOKEN_SECRET`]).
    pub token: String,
    pub fake: Fake,
    pub logs: LogCollector,
    /// Objects seen during the run (ShardSet statuses, ...), swept for the token at the end.
    seen: Mutex<Vec<(String, String)>>,
    /// Other secrets the sweep looks for (a wrong token the scenario put in a Secret).
    also_secret: Mutex<Vec<String>>,
}

impl<'a> Stack<'a> {
    /// Installs everything (see the module doc) and starts collecting logs.
    pub async fn install(ns: &'a TestNamespace, placement: Placement) -> anyhow::Result<Self> {
        let logs = LogCollector::start(ns);
        let token = fresh_token();
        put_token_secret(ns, TOKEN_SECRET, &token)?;
        apply_crd()?;

        let mut op_args: Vec<String> = [
            "upgrade",
            "--install",
            OPERATOR_RELEASE,
            &chart("shardset-operator"),
            "--wait",
            "--timeout=3m",
            &format!("--set=watchNamespace={}", ns.name),
            "--set=redis.enabled=true",
            "--set=redis.image.repository=shardset/redis",
            "--set=redis.image.tag=dev",
            "--set=logLevel=info",
        ]
        .map(String::from)
        .to_vec();
        let mut fake_args: Vec<String> = [
            "upgrade",
            "--install",
            FAKE_RELEASE,
            &chart("fake-discord"),
            "--wait",
            "--timeout=3m",
            // The fake reads the token from the same Secret as the ShardSet: it never appears in
            // helm's values.
            "--set=token=",
            &format!("--set=existingSecret={TOKEN_SECRET}"),
            &format!("--set=guilds={GUILDS}"),
            &format!("--set=maxConcurrency={MAX_CONCURRENCY}"),
            &format!("--set=identifyWindowMs={IDENTIFY_WINDOW_MS}"),
            "--set=heartbeatIntervalMs=5000",
        ]
        .map(String::from)
        .to_vec();
        if placement == Placement::ControlPlane {
            op_args.extend(control_plane_values(""));
            op_args.extend(control_plane_values("redis."));
            fake_args.extend(control_plane_values(""));
        }
        let (op, fake) = tokio::join!(
            helm_async(ns.name.clone(), op_args),
            helm_async(ns.name.clone(), fake_args)
        );
        op.context("helm install charts/shardset-operator")?;
        fake.context("helm install charts/fake-discord")?;

        Ok(Self {
            ns,
            token,
            fake: Fake {
                client: ns.client.clone(),
                base: format!(
                    "/api/v1/namespaces/{}/services/http:{FAKE_RELEASE}:8080/proxy/control",
                    ns.name
                ),
            },
            logs,
            seen: Mutex::new(Vec::new()),
            also_secret: Mutex::new(Vec::new()),
        })
    }

    /// A ShardSet manifest (YAML, for `kubectl apply`) against this stack: `shards` shards at
    /// `per_pod` per pod, the token Secret, the chart's Redis, the fake as the REST base with
    /// its Identify window. `extra_spec` is appended right after `spec.pod.imagePullPolicy`: lines
    /// indented four spaces extend `spec.pod`, lines indented two add other `spec` fields.
    pub fn shardset_yaml(&self, name: &str, shards: u32, per_pod: u32, extra_spec: &str) -> String {
        format!(
            "apiVersion: shardset.io/v1alpha1
kind: ShardSet
metadata:
  name: {name}
spec:
  shards: {shards}
  shardsPerPod: {per_pod}
  tokenSecretRef: {{name: {TOKEN_SECRET}, key: token}}
  intents: 513
  image: {WORKER_IMAGE}
  redis:
    url: redis://{OPERATOR_RELEASE}-redis:6379
  gateway:
    apiUrl: http://{FAKE_RELEASE}:8080/api
    identifyWindowMs: {IDENTIFY_WINDOW_MS}
  pod:
    imagePullPolicy: Never
{extra_spec}"
        )
    }

    /// Keeps `what` (any object text seen during the run) for the final token sweep.
    pub fn remember(&self, source: &str, what: &impl serde::Serialize) {
        let text = serde_json::to_string(what).unwrap_or_default();
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((source.to_owned(), text));
        }
    }

    /// Keeps `kubectl get -o yaml` of the namespace's objects and Events as they are now (objects
    /// deleted later in the scenario are swept too).
    pub fn snapshot(&self, when: &str) -> anyhow::Result<()> {
        let text = self.ns.kubectl(&["get", SWEPT_KINDS, "-o", "yaml"])?;
        let events = self.ns.kubectl(&["get", "events", "-o", "yaml"])?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((format!("kubectl get -o yaml ({when})"), text));
            seen.push((format!("kubectl get events -o yaml ({when})"), events));
        }
        Ok(())
    }

    /// The keys of the bot `app_id` in the chart's Redis (through a port-forward to its pod).
    pub async fn redis_keys(&self, app_id: &str) -> anyhow::Result<Vec<String>> {
        let pods = self.ns.api::<Pod>();
        let list = pods
            .list(&kube::api::ListParams::default().labels(&format!(
                "app.kubernetes.io/instance={OPERATOR_RELEASE},app.kubernetes.io/component=redis"
            )))
            .await?;
        let pod = list
            .items
            .first()
            .map(ResourceExt::name_any)
            .context("no Redis pod")?;
        let forward = PortForward::start(pods, pod, 6379).await?;
        let client = redis::Client::open(format!("redis://{}/", forward.addr))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("shardset:{{{app_id}}}:*"))
            .query_async(&mut conn)
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// The final sweep also fails when `secret` appears anywhere.
    pub fn sweep_for(&self, secret: &str) {
        if let Ok(mut also) = self.also_secret.lock() {
            also.push(secret.to_owned());
        }
    }

    /// The leading operator replica's metrics (the holder of the chart's Lease), through the
    /// API server's pod proxy: `name{labels}` → value.
    pub async fn leader_metrics(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let lease = self
            .ns
            .api::<k8s_openapi::api::coordination::v1::Lease>()
            .get(OPERATOR_RELEASE)
            .await?;
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
            .context("no operator replica holds the Lease")?;
        let path = format!(
            "/api/v1/namespaces/{}/pods/{holder}:8080/proxy/metrics",
            self.ns.name
        );
        let req = http::Request::get(path).body(Vec::new())?;
        let text = self.ns.client.request_text(req).await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    /// The operator's Prometheus text, through the metrics Service (the leader's or a standby's).
    pub async fn operator_metrics(&self) -> anyhow::Result<String> {
        let path = format!(
            "/api/v1/namespaces/{}/services/http:{OPERATOR_RELEASE}-metrics:8080/proxy/metrics",
            self.ns.name
        );
        let req = http::Request::get(path).body(Vec::new())?;
        Ok(self.ns.client.request_text(req).await?)
    }

    /// The end of every scenario: gathers what a user could look at — every log line of every pod
    /// (collected since install), the namespace's Events, `kubectl get -o yaml` of its objects,
    /// the fake's records, the statuses seen — and asserts that the token appears nowhere and
    /// that the operator's log has no `forbidden` (it works with the chart's RBAC and no more).
    pub async fn finish(&self) -> anyhow::Result<()> {
        let mut evidence: Vec<(String, String)> = Vec::new();
        evidence.push((
            format!("kubectl get {SWEPT_KINDS} -o yaml"),
            self.ns.kubectl(&["get", SWEPT_KINDS, "-o", "yaml"])?,
        ));
        evidence.push((
            "kubectl get events -o yaml".into(),
            self.ns.kubectl(&["get", "events", "-o", "yaml"])?,
        ));
        evidence.push((
            "kubectl describe shardsets".into(),
            self.ns.kubectl(&["describe", "shardsets"])?,
        ));
        for path in ["identifies", "sessions", "violations", "counters"] {
            evidence.push((
                format!("fake /control/{path}"),
                self.fake.raw(path).await.unwrap_or_default(),
            ));
        }
        evidence.push(("operator /metrics".into(), self.operator_metrics().await?));
        evidence.extend(self.seen.lock().map(|s| s.clone()).unwrap_or_default());
        let logs = self.logs.snapshot();
        evidence.extend(logs.iter().map(|(k, v)| (format!("log {k}"), v.clone())));

        // The sweeps must be able to fail: they only mean something if the logs are there.
        let operator_logs: Vec<&String> = logs
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&format!("{OPERATOR_RELEASE}-")) && !k.contains("-redis-")
            })
            .map(|(_, v)| v)
            .collect();
        if !operator_logs
            .iter()
            .any(|l| l.contains("leading: starting the controller"))
        {
            bail!(
                "no operator log says it leads; collected logs: {:?}",
                logs.keys().collect::<Vec<_>>()
            );
        }
        let mut secrets = vec![self.token.clone()];
        secrets.extend(
            self.also_secret
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
        );
        for (source, text) in &evidence {
            for secret in &secrets {
                if let Some(at) = text.find(secret.as_str()) {
                    let from = text.floor_char_boundary(at.saturating_sub(200));
                    bail!(
                        "a bot token appears in {source}: ...{}<TOKEN>...",
                        &text[from..at]
                    );
                }
            }
        }
        for (pod, text) in logs
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{OPERATOR_RELEASE}-")))
        {
            if let Some(line) = text
                .lines()
                .find(|l| l.to_ascii_lowercase().contains("forbidden"))
            {
                bail!("the operator was refused by RBAC ({pod}): {line}");
            }
        }
        let _ = writeln!(
            std::io::stderr(),
            "swept {} sources ({} container logs, {} bytes) for the token and `forbidden`: clean",
            evidence.len(),
            logs.len(),
            evidence.iter().map(|(_, t)| t.len()).sum::<usize>()
        );
        Ok(())
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        self.logs.stop();
        // While the operator still runs, its finalizer cleans up; whatever is left after that is
        // released by hand so that the namespace can go.
        let ns = &self.ns.name;
        let _ = kubectl(&["-n", ns, "delete", "shardsets", "--all", "--timeout=60s"]);
        if let Ok(names) = kubectl(&["-n", ns, "get", "shardsets", "-o", "name"]) {
            for name in names.lines().filter(|l| !l.is_empty()) {
                let _ = kubectl(&[
                    "-n",
                    ns,
                    "patch",
                    name,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ]);
            }
        }
    }
}

/// Creates (or replaces) the token Secret with `kubectl apply`, as a user would.
pub fn put_token_secret(ns: &TestNamespace, name: &str, token: &str) -> anyhow::Result<()> {
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"token": token},
    });
    ns.apply(&secret.to_string())?;
    Ok(())
}

async fn helm_async(ns: String, args: Vec<String>) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut all: Vec<&str> = vec!["--namespace", &ns];
        all.extend(args.iter().map(String::as_str));
        shardset_e2e::helm(&all)
    })
    .await?
}

/// The fake Discord's control API, through the API server's service proxy.
pub struct Fake {
    client: Client,
    base: String,
}

impl Fake {
    /// `GET /control/<path>` as text.
    pub async fn raw(&self, path: &str) -> anyhow::Result<String> {
        let req = http::Request::get(format!("{}/{path}", self.base)).body(Vec::new())?;
        Ok(self.client.request_text(req).await?)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let text = self.raw(path).await?;
        serde_json::from_str(&text).with_context(|| format!("/control/{path}: {text}"))
    }

    pub async fn identifies(&self) -> anyhow::Result<Vec<IdentifyRecord>> {
        self.get("identifies").await
    }

    pub async fn sessions(&self) -> anyhow::Result<Vec<SessionInfo>> {
        self.get("sessions").await
    }

    pub async fn violations(&self) -> anyhow::Result<Vec<Violation>> {
        self.get("violations").await
    }

    /// Fails unless the fake recorded no violation at all.
    pub async fn assert_no_violations(&self, when: &str) -> anyhow::Result<()> {
        let v = self.violations().await?;
        if !v.is_empty() {
            bail!(
                "the fake Discord recorded {} violations {when}: {v:#?}",
                v.len()
            );
        }
        Ok(())
    }

    /// Polls the sessions until every shard of the layout `total` has a session that is READY and
    /// connected (the fake has no watch API; the wait ends as soon as it holds).
    pub async fn wait_layout_live(
        &self,
        total: u32,
        timeout: Duration,
    ) -> anyhow::Result<Vec<SessionInfo>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let sessions = self.sessions().await?;
            let live = live_sessions(&sessions, total);
            if live.len() == total as usize {
                return Ok(live.into_values().collect());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "after {timeout:?} only shards {:?} of layout {total} are live in the fake",
                    live.keys().collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The fake's load generator, budget and reply log (the resharding scenarios drive and measure
/// with them).
impl Fake {
    /// `<method> /control/<path>` with a JSON body; the answer as text.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}/{path}", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body)?)?;
        Ok(self.client.request_text(req).await?)
    }

    /// Starts (or changes) the synthetic MESSAGE_CREATE load: `rate` messages per second over all
    /// guilds, `0` stops it.
    pub async fn set_load(&self, rate: u32) -> anyhow::Result<()> {
        let body = serde_json::json!({"rate": rate, "payload_bytes": 256, "dm_percent": 0});
        self.send(http::Method::POST, "load", &body).await?;
        Ok(())
    }

    /// Sets the session starts left (`session_start_limit.remaining`).
    pub async fn set_budget(&self, remaining: u32) -> anyhow::Result<()> {
        let body = serde_json::json!({"remaining": remaining});
        self.send(http::Method::POST, "budget", &body).await?;
        Ok(())
    }

    /// The budget as `/gateway/bot` answers it now.
    pub async fn budget(&self) -> anyhow::Result<fake_discord::control::BudgetInfo> {
        self.get("budget").await
    }

    /// For the synthetic messages created in `[since_ms, until_ms)`: how many got exactly one
    /// reply, none, or more.
    pub async fn replies(
        &self,
        since_ms: u64,
        until_ms: u64,
    ) -> anyhow::Result<fake_discord::control::RepliesReport> {
        self.get(&format!("replies?since_ms={since_ms}&until_ms={until_ms}"))
            .await
    }
}

/// Unix ms at which the fake created a message (its id is a snowflake stamped with it).
pub fn snowflake_ms(id: &str) -> anyhow::Result<u64> {
    let id: u64 = id.parse().with_context(|| format!("message id {id}"))?;
    Ok((id >> 22) + 1_420_070_400_000)
}

/// The first and the last message created in `[since_ms, until_ms)` that got no reply (their
/// creation times, ms), or `None` when every one was answered: the sample of a report lists
/// the oldest unanswered first, and a binary search on `since_ms` finds the newest.
pub async fn unanswered_span(
    fake: &Fake,
    since_ms: u64,
    until_ms: u64,
) -> anyhow::Result<Option<(u64, u64)>> {
    let all = fake.replies(since_ms, until_ms).await?;
    let Some(first) = all.unanswered_sample.first() else {
        return Ok(None);
    };
    let first = snowflake_ms(first)?;
    // Invariant: [lo, until) holds an unanswered message, [hi, until) none.
    let (mut lo, mut hi) = (first, until_ms);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fake.replies(mid, until_ms).await?.none > 0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Some((first, lo)))
}

/// Records every distinct `(Resharding reason, status.layout.step)` a ShardSet's status goes
/// through, in order, from a watch (the steps of a reshard last from milliseconds to `W`; a
/// watch sees each status write).
pub struct StepLog {
    steps: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl StepLog {
    pub fn start(ns: &TestNamespace, name: &str) -> Self {
        let steps: Arc<Mutex<Vec<String>>> = Arc::default();
        let api = ns.api::<shardset_operator::crd::ShardSet>();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let sink = Arc::clone(&steps);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config));
            while let Ok(Some(event)) = events.try_next().await {
                let ss = match event {
                    watcher::Event::Apply(s) | watcher::Event::InitApply(s) => s,
                    _ => continue,
                };
                let Some(status) = ss.status.as_ref() else {
                    continue;
                };
                let Some(cond) = status.conditions.iter().find(|c| c.type_ == "Resharding") else {
                    continue;
                };
                let entry = format!("{}={}", cond.status, cond.reason);
                if let Ok(mut steps) = sink.lock()
                    && steps.last() != Some(&entry)
                {
                    steps.push(entry);
                }
            }
        });
        Self { steps, task }
    }

    /// The `status=reason` entries seen so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.steps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for StepLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records the name of every pod of the namespace that ever exists while it runs.
pub struct PodLog {
    names: Arc<Mutex<BTreeSet<String>>>,
    task: JoinHandle<()>,
}

impl PodLog {
    pub fn start(ns: &TestNamespace) -> Self {
        let names: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let api = ns.api::<Pod>();
        let sink = Arc::clone(&names);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Ok(Some(event)) = events.try_next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event
                    && let Ok(mut names) = sink.lock()
                {
                    names.insert(p.name_any());
                }
            }
        });
        Self { names, task }
    }

    /// Every pod name seen so far.
    pub fn seen(&self) -> BTreeSet<String> {
        self.names.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Unix time in ms (the fake stamps its messages on the same host clock: kind nodes are
/// containers of this machine).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The pod names of layout `total` at `per_pod` shards per pod (`bot-<total>-<first>-<last>`).
pub fn layout_pods(name: &str, total: u32, per_pod: u32) -> Vec<String> {
    (0..total)
        .step_by(per_pod as usize)
        .map(|first| {
            format!(
                "{name}-{total}-{first}-{}",
                (first + per_pod - 1).min(total - 1)
            )
        })
        .collect()
}

/// The live (connected, READY) session of each shard of layout `total`, by shard id.
pub fn live_sessions(sessions: &[SessionInfo], total: u32) -> BTreeMap<u32, SessionInfo> {
    sessions
        .iter()
        .filter(|s| s.num_shards == total && s.connected && s.ready)
        .map(|s| (s.shard, s.clone()))
        .collect()
}

/// Identifies of layout `total` for the shards in `shards`.
pub fn identifies_of(records: &[IdentifyRecord], total: u32, shards: &BTreeSet<u32>) -> usize {
    records
        .iter()
        .filter(|r| r.num_shards == total && shards.contains(&r.shard))
        .count()
}

/// A local TCP port forwarded to a pod's port through the API server (kube's port-forward).
pub struct PortForward {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PortForward {
    pub async fn start(pods: Api<Pod>, pod: String, port: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (pods, pod) = (pods.clone(), pod.clone());
                tokio::spawn(async move {
                    let Ok(mut forwarder) = pods.portforward(&pod, &[port]).await else {
                        return;
                    };
                    if let Some(mut upstream) = forwarder.take_stream(port) {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                    let _ = forwarder.join().await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows the logs of every container of every pod in a namespace, from the moment it runs
/// until the pod goes (deleted pods included), keyed `<pod>@<uid prefix>/<container>#<restart>`.
pub struct LogCollector {
    logs: Arc<Mutex<BTreeMap<String, String>>>,
    task: JoinHandle<()>,
}

impl LogCollector {
    pub fn start(ns: &TestNamespace) -> Self {
        let logs: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let api = ns.api::<Pod>();
        let sink = Arc::clone(&logs);
        let task = tokio::spawn(async move {
            let mut following: BTreeSet<String> = BTreeSet::new();
            let mut events = std::pin::pin!(watcher(api.clone(), watcher::Config::default()));
            while let Ok(Some(event)) = events.try_next().await {
                let pod = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                    _ => continue,
                };
                let uid = pod.uid().unwrap_or_default();
                for (container, restarts) in started_containers(&pod) {
                    // A pod replaced under the same name is another pod: the uid tells them apart.
                    let key = format!(
                        "{}@{}/{container}#{restarts}",
                        pod.name_any(),
                        uid.get(..8).unwrap_or_default()
                    );
                    if !following.insert(key.clone()) {
                        continue;
                    }
                    let (api, sink, name) = (api.clone(), Arc::clone(&sink), pod.name_any());
                    tokio::spawn(async move {
                        let params = LogParams {
                            follow: true,
                            container: Some(container),
                            ..LogParams::default()
                        };
                        let Ok(reader) = api.log_stream(&name, &params).await else {
                            return;
                        };
                        let mut lines = std::pin::pin!(reader.lines());
                        while let Some(Ok(line)) = lines.next().await {
                            if let Ok(mut logs) = sink.lock() {
                                let text = logs.entry(key.clone()).or_default();
                                text.push_str(&line);
                                text.push('\n');
                            }
                        }
                    });
                }
            }
        });
        Self { logs, task }
    }

    /// Everything collected so far.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for LogCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Containers of `pod` that have started (running or terminated), with their restart count.
fn started_containers(pod: &Pod) -> Vec<(String, i32)> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| {
                    c.state
                        .as_ref()
                        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                })
                .map(|c| (c.name.clone(), c.restart_count))
                .collect()
        })
        .unwrap_or_default()
}
