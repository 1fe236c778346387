//! What a user installs, installed the way a user installs it, in the test's namespace: the token
//! Secret, the CRD, `helm install` of `charts/shardset-operator` (two leader-elected replicas under
//! the chart's service account and RBAC, watching only this namespace, with the chart's Redis) and
//! of `charts/fake-discord` (reading the same Secret), both with `--wait`. Scenario sizes stay small
//! and the fake's Identify window short (500 ms, `max_concurrency` 16) so that layouts start in
//! seconds. Then what the scenarios read of it: ShardSet manifests against it, settled layouts,
//! the operator's metrics, the bot's keys in the chart's Redis.
//!
//! On drop, [`Stack`] deletes the ShardSets while the operator still runs (so the finalizer can
//! finish), then removes any finalizer left, so the namespace can always go.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::fake::{Fake, SessionInfo, now_ms};
use super::port_forward::PortForward;
use crate::manifest::ShardSetManifest;
use crate::metrics::Metrics;
use crate::recorders::LogCollector;
use crate::secrets::{TOKEN_SECRET, fresh_token, put_token};
use crate::shardsets::{
    SHARDSET_LABEL, SettledLayout, ShardSet, release_finalizers, wait_settled_layout,
};
use crate::tools::{helm_async, repo_path};
use crate::waits::{Look, poll};
use crate::{TestNamespace, apply_crd_dir, install_crd, kubectl};

/// The operator chart's release name: its Redis Service is `shardset-operator-redis`, its metrics
/// Service `shardset-operator-metrics`.
pub const OPERATOR_RELEASE: &str = "shardset-operator";
/// The chart's Redis password Secret (key `password`), which the chart generates on install.
pub const REDIS_SECRET: &str = "shardset-operator-redis";
/// The fake Discord chart's release name, also its Service name.
pub const FAKE_RELEASE: &str = "fake-discord";
/// The fake chart's default application id; the extra fakes' bots follow it.
const FAKE_APPLICATION_ID: u64 = 1_311_000_000_000_000_000;
/// The worker image `make images` builds.
pub const WORKER_IMAGE: &str = "shardset/shard-worker:dev";
/// Guilds the fake's bot is in.
pub const GUILDS: u32 = 400;
/// The fake's Identify window (ms) and the ShardSet's `spec.gateway.identifyWindowMs`.
pub const IDENTIFY_WINDOW_MS: u32 = 500;
/// The fake's `max_concurrency`.
pub const MAX_CONCURRENCY: u32 = 16;
/// The synthetic load the resharding scenarios run under: MESSAGE_CREATEs per second over all
/// guilds, each answered by a worker with `REPLY_TO_MESSAGES`.
pub const LOAD: u32 = 40;
/// How long a layout may take to answer a second of the load.
const ANSWERING_WITHIN: Duration = Duration::from_secs(60);
/// How far back from now the reply log is judged: replies still on their way are not counted.
const REPLY_LAG_MS: u64 = 500;

/// Where the stack's own pods (operator, Redis, fake Discord) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Anywhere,
    /// On the control-plane node (tolerating its taint), so that a scenario can stop a worker
    /// node without taking Redis, the fake or the operator with it.
    ControlPlane,
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

/// `helm upgrade --install <release> <chart dir> --wait` in `ns`, then `sets`.
pub fn helm_install(ns: &str, release: &str, chart: &str, sets: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--namespace",
        ns,
        "upgrade",
        "--install",
        release,
        chart,
        "--wait",
        "--timeout=3m",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(sets);
    args
}

/// `--set` arguments of today's operator chart for a stack in `ns`.
fn current_operator_values(ns: &TestNamespace, settings: &StackSettings) -> Vec<String> {
    let mut op_sets: Vec<String> = [
        format!("--set=watchNamespace={}", ns.name),
        "--set=redis.enabled=true".into(),
        "--set=redis.image.repository=shardset/redis".into(),
        "--set=redis.image.tag=dev".into(),
        "--set=logLevel=info".into(),
        // The ShardSets name the fakes by their Services in this namespace; with their port, the
        // operator's NetworkPolicy lets the workers reach them.
        format!(
            "--set=trustedApiHosts={{{}}}",
            (0..=settings.extra_fakes)
                .map(|n| format!("{}:8080", fake_release(n)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ]
    .to_vec();
    if settings.redis_tls {
        op_sets.push("--set=redis.tls.enabled=true".into());
    }
    if settings.nats {
        op_sets.extend([
            "--set=nats.enabled=true".into(),
            "--set=nats.image.repository=shardset/nats".into(),
            "--set=nats.image.tag=dev".into(),
        ]);
    }
    op_sets
}

/// `--set` arguments of a previous release's operator chart (`tag` of its images) for a stack in
/// `ns`: what that release's demo installed (its chart's Redis, no password; no fake host to trust).
fn previous_operator_values(ns: &TestNamespace, tag: &str) -> Vec<String> {
    vec![
        format!("--set=watchNamespace={}", ns.name),
        format!("--set=image.tag={tag}"),
        "--set=redis.enabled=true".into(),
        "--set=redis.image.repository=shardset/redis".into(),
        format!("--set=redis.image.tag={tag}"),
        "--set=logLevel=info".into(),
    ]
}

/// The operator chart, its Redis and the fake Discord chart, installed in one test namespace.
pub struct Stack<'a> {
    pub ns: &'a TestNamespace,
    /// The bot token the fake accepts (in the Secret [`TOKEN_SECRET`]).
    pub token: String,
    pub fake: Fake,
    /// The fake's Identify window (ms), which [`Stack::shardset`] gives the ShardSets.
    pub identify_window_ms: u32,
    pub logs: LogCollector,
    /// Objects seen during the run (ShardSet statuses, ...), swept for the token at the end.
    pub(super) seen: Mutex<Vec<(String, String)>>,
    /// Other secrets the sweep looks for (a wrong token the scenario put in a Secret).
    pub(super) also_secret: Mutex<Vec<String>>,
    /// The chart's Redis serves TLS only (`redis.tls.enabled`): ShardSets use `rediss://` and
    /// trust its CA through `spec.redis.tls.caSecretRef`.
    redis_tls: bool,
}

/// A layout serving alone: settled (see [`wait_settled_layout`]) and every shard live in the fake.
#[derive(Debug, Clone)]
pub struct LiveLayout {
    pub shardset: ShardSet,
    pub pods: Vec<Pod>,
    /// The live session of each shard.
    pub sessions: Vec<SessionInfo>,
}

/// The operator chart's NATS (`nats.enabled`), the bus of the bot tier's scenarios.
pub const NATS_URL: &str = "nats://shardset-operator-nats:4222";

/// Which operator chart a stack installs.
#[derive(Debug, Clone, Default)]
pub enum OperatorChart {
    /// This tree's `charts/shardset-operator`, its CRD and the images `make images` built.
    #[default]
    Current,
    /// A previous release (`make test-upgrade`): its chart directory (CRD included) and the tag
    /// of its images, with the values that release knew (its schema refuses today's).
    Previous { chart: PathBuf, tag: String },
}

impl OperatorChart {
    /// The previous release `make test-upgrade` built and loaded (`tests/cluster/previous-release.sh`
    /// exports `SHARDSET_PREVIOUS_CHART` and `SHARDSET_PREVIOUS_TAG`).
    pub fn previous_from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| format!("{name} is unset: run make test-upgrade"))
        };
        Ok(Self::Previous {
            chart: PathBuf::from(var("SHARDSET_PREVIOUS_CHART")?),
            tag: var("SHARDSET_PREVIOUS_TAG")?,
        })
    }
}

/// What a stack is made of beyond its defaults: where its pods go, the fake's timing and size,
/// and whose logs are followed. [`Stack::install`] takes the defaults above; a benchmark at
/// scale sets its own ([`Stack::install_with`]).
#[derive(Debug, Clone)]
pub struct StackSettings {
    pub placement: Placement,
    /// Today's operator chart, or a previous release's.
    pub operator_chart: OperatorChart,
    /// The operator chart's NATS too ([`NATS_URL`]).
    pub nats: bool,
    /// The chart's Redis serves TLS only (`redis.tls.enabled`, its CA generated by the chart);
    /// [`Stack::shardset`] then names `rediss://` and the CA Secret.
    pub redis_tls: bool,
    /// The fake's Identify window, also [`Stack::shardset`]'s `identifyWindowMs`.
    pub identify_window_ms: u32,
    /// The fake's `max_concurrency`.
    pub max_concurrency: u32,
    /// Guilds the fake's bot is in.
    pub guilds: u32,
    /// The fake's heartbeat interval (ms).
    pub heartbeat_interval_ms: u32,
    /// More `--set` arguments for the fake's chart (after the ones above, so they win).
    pub fake_values: Vec<String>,
    /// Follow the logs of every pod of the namespace (the sweep reads them); `false`: only the
    /// stack's own pods (operator, Redis, fake), not the workers': hundreds of log streams
    /// through the API server would load what a benchmark measures.
    pub worker_logs: bool,
    /// Fake Discords besides [`FAKE_RELEASE`], each another bot (one ShardSet per bot, and a fake
    /// serves one bot: its buckets and budget are that bot's): `fake-discord-<n>` for n from 1,
    /// with the same token and settings, trusted by the operator ([`Stack::fake_api_url`]).
    pub extra_fakes: u32,
}

/// The release of the extra fake `n` (0: the stack's own).
pub fn fake_release(n: u32) -> String {
    if n == 0 {
        FAKE_RELEASE.to_owned()
    } else {
        format!("{FAKE_RELEASE}-{n}")
    }
}

impl Default for StackSettings {
    fn default() -> Self {
        Self {
            placement: Placement::Anywhere,
            operator_chart: OperatorChart::Current,
            nats: false,
            redis_tls: false,
            identify_window_ms: IDENTIFY_WINDOW_MS,
            max_concurrency: MAX_CONCURRENCY,
            guilds: GUILDS,
            heartbeat_interval_ms: 5000,
            fake_values: Vec::new(),
            worker_logs: true,
            extra_fakes: 0,
        }
    }
}

impl<'a> Stack<'a> {
    /// Installs everything (see the module doc) and starts collecting logs.
    pub async fn install(ns: &'a TestNamespace, placement: Placement) -> anyhow::Result<Self> {
        let settings = StackSettings {
            placement,
            ..StackSettings::default()
        };
        Self::install_with(ns, &settings).await
    }

    /// [`Stack::install`] with the operator chart's NATS too ([`NATS_URL`]), built by `make images`.
    pub async fn install_with_nats(ns: &'a TestNamespace) -> anyhow::Result<Self> {
        let settings = StackSettings {
            nats: true,
            ..StackSettings::default()
        };
        Self::install_with(ns, &settings).await
    }

    /// [`Stack::install`] with the chart's Redis serving TLS only ([`StackSettings::redis_tls`]).
    pub async fn install_with_redis_tls(ns: &'a TestNamespace) -> anyhow::Result<Self> {
        let settings = StackSettings {
            redis_tls: true,
            ..StackSettings::default()
        };
        Self::install_with(ns, &settings).await
    }

    /// Installs everything as `settings` say and starts collecting logs.
    pub async fn install_with(
        ns: &'a TestNamespace,
        settings: &StackSettings,
    ) -> anyhow::Result<Self> {
        let logs = if settings.worker_logs {
            LogCollector::start(ns)
        } else {
            LogCollector::start_matching(ns, &format!("!{SHARDSET_LABEL}"))
        };
        let token = fresh_token();
        put_token(ns, TOKEN_SECRET, &token).await?;
        let (operator_chart, mut op_sets) = match &settings.operator_chart {
            OperatorChart::Current => {
                install_crd()?;
                let chart = repo_path("charts/shardset-operator");
                (chart, current_operator_values(ns, settings))
            }
            OperatorChart::Previous { chart, tag } => {
                // That release's CRD, as its first `helm install` would have put it.
                apply_crd_dir(&chart.join("crds"))?;
                (chart.clone(), previous_operator_values(ns, tag))
            }
        };
        let mut fake_sets: Vec<String> = [
            // The fake reads the token from the same Secret as the ShardSet: it never appears in
            // helm's values.
            "--set=token=".into(),
            format!("--set=existingSecret={TOKEN_SECRET}"),
            format!("--set=guilds={}", settings.guilds),
            format!("--set=maxConcurrency={}", settings.max_concurrency),
            format!("--set=identifyWindowMs={}", settings.identify_window_ms),
            format!(
                "--set=heartbeatIntervalMs={}",
                settings.heartbeat_interval_ms
            ),
        ]
        .to_vec();
        fake_sets.extend(settings.fake_values.iter().cloned());
        if settings.placement == Placement::ControlPlane {
            op_sets.extend(control_plane_values(""));
            op_sets.extend(control_plane_values("redis."));
            fake_sets.extend(control_plane_values(""));
        }
        let fake_chart = repo_path("charts/fake-discord");
        let fake_chart = fake_chart.to_string_lossy();
        let (op, fake) = tokio::join!(
            helm_async(helm_install(
                &ns.name,
                OPERATOR_RELEASE,
                &operator_chart.to_string_lossy(),
                &op_sets
            )),
            helm_async(helm_install(
                &ns.name,
                FAKE_RELEASE,
                &fake_chart,
                &fake_sets
            ))
        );
        op.context("helm install charts/shardset-operator")?;
        fake.context("helm install charts/fake-discord")?;
        let extra = (1..=settings.extra_fakes).map(|n| {
            let mut sets = fake_sets.clone();
            sets.push(format!(
                "--set-string=applicationId={}",
                FAKE_APPLICATION_ID + u64::from(n)
            ));
            let release = fake_release(n);
            let chart = &fake_chart;
            async move {
                helm_async(helm_install(&ns.name, &release, chart, &sets))
                    .await
                    .with_context(|| format!("helm install charts/fake-discord as {release}"))
            }
        });
        for installed in futures_util::future::join_all(extra).await {
            installed?;
        }

        Ok(Self {
            ns,
            token,
            fake: Fake::new(ns.client.clone(), &ns.name, FAKE_RELEASE),
            identify_window_ms: settings.identify_window_ms,
            logs,
            seen: Mutex::new(Vec::new()),
            also_secret: Mutex::new(Vec::new()),
            redis_tls: settings.redis_tls,
        })
    }

    /// A ShardSet against this stack: `shards` shards at `per_pod` per pod, the worker image, the
    /// token Secret, the chart's Redis, the fake as the REST base with its Identify window.
    pub fn shardset(&self, name: &str, shards: u32, per_pod: u32) -> ShardSetManifest {
        let scheme = if self.redis_tls { "rediss" } else { "redis" };
        let manifest = ShardSetManifest::new(name, WORKER_IMAGE)
            .shards(shards)
            .per_pod(per_pod)
            .intents(513)
            .redis_url(&format!("{scheme}://{OPERATOR_RELEASE}-redis:6379"))
            .redis_secret(REDIS_SECRET)
            .api_url(&format!("http://{FAKE_RELEASE}:8080/api"))
            .identify_window_ms(self.identify_window_ms);
        if self.redis_tls {
            manifest.redis_ca_secret(&format!("{OPERATOR_RELEASE}-redis-ca"))
        } else {
            manifest
        }
    }

    /// The REST base of fake `n` ([`StackSettings::extra_fakes`]; 0: the stack's own).
    pub fn fake_api_url(n: u32) -> String {
        format!("http://{}:8080/api", fake_release(n))
    }

    /// Applies `shardset` and waits until its layout serves alone ([`Stack::wait_layout`]).
    pub async fn serve(
        &self,
        shardset: &ShardSetManifest,
        timeout: Duration,
    ) -> anyhow::Result<LiveLayout> {
        shardset.apply(self.ns)?;
        let spec = &shardset.value()["spec"];
        let total = spec["shards"].as_u64().context("spec.shards")?;
        let per_pod = spec["shardsPerPod"].as_u64().unwrap_or(1);
        let name = shardset.name();
        self.wait_layout(name, total as u32, per_pod as u32, timeout)
            .await
    }

    /// Starts the synthetic [`LOAD`] and waits until the running layout answers it, each message
    /// exactly once (proof that the handler answers before anything changes); returns when the
    /// load started (Unix ms): the start of the reply log the scenario judges.
    pub async fn start_load(&self) -> anyhow::Result<u64> {
        self.fake.set_load(LOAD).await?;
        let since = now_ms();
        let settled = 2 * REPLY_LAG_MS;
        self.fake
            .wait_load_answered("the running layout", since, settled, LOAD, ANSWERING_WITHIN)
            .await?;
        Ok(since)
    }

    /// Keeps the load on until `who` has answered a full second of it (from now on, each message
    /// exactly once; up to `timeout`), then stops it: the answered tail bounds from above
    /// whatever went unanswered before. Returns the end of the reply log to judge (Unix ms).
    pub async fn stop_load_after_tail(&self, who: &str, timeout: Duration) -> anyhow::Result<u64> {
        let tail_from = now_ms();
        self.fake
            .wait_load_answered(who, tail_from, REPLY_LAG_MS, LOAD, timeout)
            .await?;
        let until = now_ms().saturating_sub(REPLY_LAG_MS);
        self.fake.set_load(0).await?;
        Ok(until)
    }

    /// Waits until layout `total` (at `per_pod`) of ShardSet `name` serves alone: status settled,
    /// exactly its pods Ready, every shard live in the fake (each wait up to `timeout`). The
    /// status is kept for the sweep.
    pub async fn wait_layout(
        &self,
        name: &str,
        total: u32,
        per_pod: u32,
        timeout: Duration,
    ) -> anyhow::Result<LiveLayout> {
        let SettledLayout { shardset, pods } =
            wait_settled_layout(self.ns, name, total, per_pod, timeout).await?;
        self.remember("ShardSet", &shardset);
        let sessions = self.fake.wait_layout_live(total, timeout).await?;
        Ok(LiveLayout {
            shardset,
            pods,
            sessions,
        })
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
        let text = self
            .ns
            .kubectl(&["get", super::sweep::SWEPT_KINDS, "-o", "yaml"])?;
        let events = self.ns.kubectl(&["get", "events", "-o", "yaml"])?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((format!("kubectl get -o yaml ({when})"), text));
            seen.push((format!("kubectl get events -o yaml ({when})"), events));
        }
        Ok(())
    }

    /// The final sweep also fails when `secret` appears anywhere.
    pub fn sweep_for(&self, secret: &str) {
        if let Ok(mut also) = self.also_secret.lock() {
            also.push(secret.to_owned());
        }
    }

    /// The keys of the bot `app_id` in the chart's Redis (through a port-forward to its pod).
    pub async fn redis_keys(&self, app_id: &str) -> anyhow::Result<Vec<String>> {
        let forward = self.redis_forward().await?;
        let mut conn = self.redis_connection(&forward).await?;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("shardset:{{{app_id}}}:*"))
            .query_async(&mut conn)
            .await?;
        keys.sort();
        Ok(keys)
    }

    /// A port-forward to the chart's Redis pod (for [`Stack::redis_connection`]).
    pub async fn redis_forward(&self) -> anyhow::Result<PortForward> {
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
        PortForward::start(pods, pod, 6379).await
    }

    /// The chart's Redis password, from its Secret.
    pub async fn redis_password(&self) -> anyhow::Result<String> {
        let secret = self
            .ns
            .api::<k8s_openapi::api::core::v1::Secret>()
            .get(REDIS_SECRET)
            .await?;
        let bytes = secret
            .data
            .and_then(|mut d| d.remove("password"))
            .context("the chart's Redis Secret has no password")?;
        Ok(String::from_utf8(bytes.0)?)
    }

    /// A connection to the chart's Redis through `forward`, authenticated with its password.
    pub async fn redis_connection(
        &self,
        forward: &PortForward,
    ) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        use redis::IntoConnectionInfo as _;
        let info = format!("redis://{}/", forward.addr).into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_password(self.redis_password().await?);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    /// The leading operator replica's metrics (the holder of the chart's Lease), through the
    /// API server's pod proxy.
    pub async fn leader_metrics(&self) -> anyhow::Result<Metrics> {
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
        self.pod_metrics(&holder).await
    }

    /// The metrics of pod `pod` (an operator replica or a worker: both serve `/metrics` on 8080),
    /// through the API server's pod proxy.
    pub async fn pod_metrics(&self, pod: &str) -> anyhow::Result<Metrics> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:8080/proxy/metrics",
            self.ns.name
        );
        let req = http::Request::get(path).body(Vec::new())?;
        Ok(Metrics::parse(&self.ns.client.request_text(req).await?))
    }

    /// Waits until the leading replica has started `at_least` reconciles in all; its metrics then.
    /// (The operator has no watchable record of its passes: this polls its metrics.)
    pub async fn wait_leader_reconciles(
        &self,
        at_least: f64,
        timeout: Duration,
    ) -> anyhow::Result<Metrics> {
        poll(
            &format!("{at_least} reconciles"),
            timeout,
            Duration::from_millis(250),
            || async {
                let metrics = self.leader_metrics().await?;
                Ok(if metrics.reconciles() >= at_least {
                    Look::Done(metrics)
                } else {
                    Look::NotYet(format!("{} reconciles", metrics.reconciles()))
                })
            },
        )
        .await
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
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        self.logs.stop();
        // While the operator still runs, its finalizer cleans up; whatever is left after that is
        // released by hand so that the namespace can go.
        let ns = &self.ns.name;
        let _ = kubectl(&["-n", ns, "delete", "shardsets", "--all", "--timeout=60s"]);
        release_finalizers(ns);
    }
}
