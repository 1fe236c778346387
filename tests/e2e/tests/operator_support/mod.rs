//! Shared by the operator scenarios (`tests/operator_*.rs`): the operator binary run as a local
//! process against the kind cluster (scoped to the test's namespace), its metrics, the CRD, a
//! real redis-server, the fake Discord in-process, and waits on ShardSets and pod sets.
//!
//! Everything started here stops on drop, also when the test fails: the operator is killed, and
//! the finalizers of ShardSets it leaves behind are removed so the namespace can go.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fake_discord::{Config, FakeDiscord, RunningFake};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PostParams;
use kube::runtime::watcher;
// The ShardSet and pod waits are shared with the end-to-end scenarios.
#[allow(unused_imports)]
pub use shardset_e2e::shardsets::{
    condition, exactly_ready, has_condition, kubectl_edit, names, ready_names, wait_pods,
    wait_shardset,
};
use shardset_e2e::{TestNamespace, kubectl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The image standing in for the worker (serves `/healthz` and `/readyz`).
pub const WORKER_IMAGE: &str = shardset_e2e::PROBE_IMAGE;
/// The token the fake Discord accepts in these tests.
pub const TOKEN: &str = "e2e.right.token-7f3a9c";

/// The `shardset-operator` binary: `SHARDSET_OPERATOR_BIN` if set (the benchmark uses the
/// release build), else built once per test binary, next to it, in the same profile.
fn operator_binary() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SHARDSET_OPERATOR_BIN") {
            return Ok(PathBuf::from(bin));
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/<test> → target/<profile>
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .ok_or("no target dir")?
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "shardset-operator",
            "--bin",
            "shardset-operator",
        ]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("cargo build of shardset-operator failed: {status}"));
        }
        Ok(dir.join("shardset-operator"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Applies the generated CRD (as a user would) and waits until it is served.
pub fn install_crd() -> anyhow::Result<()> {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `shardset-operator` process watching one namespace.
pub struct Operator {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    pub identity: String,
    namespace: String,
}

impl Operator {
    /// Starts the operator for `ns` with leader election on a Lease in `ns`, resync every 5 s,
    /// and `extra` flags.
    pub fn start(ns: &TestNamespace, identity: &str, extra: &[&str]) -> anyhow::Result<Self> {
        install_crd()?;
        let bin = operator_binary()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let log_path = std::env::temp_dir().join(format!("{}-{identity}.log", ns.name));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(bin)
            .args([
                "--namespace",
                &ns.name,
                "--lease-namespace",
                &ns.name,
                "--identity",
                identity,
                "--http-addr",
                &addr.to_string(),
                "--log-format",
                "json",
                "--resync-seconds",
                "5",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start shardset-operator")?;
        Ok(Self {
            child: Some(child),
            addr,
            log_path,
            identity: identity.to_owned(),
            namespace: ns.name.clone(),
        })
    }

    /// The process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its `/metrics`, parsed: `name{labels}` → value. Waits up to 30 s for the server.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http_get(self.addr, "/metrics").await {
                Ok(body) => return Ok(Metrics::parse(&body)),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("operator did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash, nothing released.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        // Captured by the test harness: shown only when the test fails (by panic or by Err).
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("--- operator {} log tail ---", self.identity);
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        if std::thread::panicking() {
            eprintln!("(full log kept at {})", self.log_path.display());
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
        // Without an operator the finalizer would keep the ShardSets (and the namespace) forever.
        if let Ok(names) = kubectl(&["-n", &self.namespace, "get", "shardsets", "-o", "name"]) {
            for name in names.lines().filter(|l| !l.is_empty()) {
                let _ = kubectl(&[
                    "-n",
                    &self.namespace,
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

/// Parsed Prometheus text.
#[derive(Debug, Clone, Default)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of `name` exactly as written (with labels), 0 when absent.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// Reconciliations started.
    pub fn reconciles(&self) -> f64 {
        self.get("shardset_operator_reconciles_total")
    }

    /// Whether this replica leads.
    pub fn leader(&self) -> bool {
        self.get("shardset_operator_leader") == 1.0
    }

    /// Write requests the operator sent to the API server, except leader-election renewals.
    pub fn writes(&self) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("shardset_operator_kube_requests_total{"))
            .filter(|(k, _)| !k.contains("resource=\"leases\""))
            .filter(|(k, _)| {
                ["create", "update", "patch", "delete", "deletecollection"]
                    .iter()
                    .any(|v| k.contains(&format!("verb=\"{v}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every `kube_requests_total` series, for messages.
    pub fn requests(&self) -> Vec<(String, f64)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("shardset_operator_kube_requests_total{"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {head}");
    }
    Ok(body.to_owned())
}

/// A redis-server on a free port of the host, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server is installed (apt-get install redis-server)")?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> anyhow::Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workers' Redis side, for scenarios whose pods run the probe image: every 200 ms, each
/// Ready (not terminating) pod's shards are reported READY in their status records, acknowledging
/// the revision of the layout roles then in `P:active-layout`, as real workers do. Without it a
/// reshard waits forever for acknowledgements (`docs/resharding.md`). Stops on drop.
pub struct WorkerStandIn {
    task: tokio::task::JoinHandle<()>,
}

impl WorkerStandIn {
    pub async fn start(ns: &TestNamespace, redis: &Redis) -> anyhow::Result<Self> {
        use redis::AsyncCommands;
        use shardset_contract::{Keys, LayoutRoles, ShardState, ShardStatus};

        let mut conn = redis::Client::open(redis.url())?
            .get_multiplexed_async_connection()
            .await?;
        let keys = Keys::new(fake_application_id());
        let pods = ns.api::<Pod>();
        let task = tokio::spawn(async move {
            loop {
                let roles: Option<String> =
                    conn.get(keys.active_layout()).await.unwrap_or_default();
                let revision = roles
                    .and_then(|json| serde_json::from_str::<LayoutRoles>(&json).ok())
                    .map_or(0, |doc| doc.revision);
                let list = pods.list(&kube::api::ListParams::default()).await;
                for pod in list.map(|l| l.items).unwrap_or_default() {
                    if pod.metadata.deletion_timestamp.is_some()
                        || !shardset_e2e::conditions::is_pod_ready(&pod)
                    {
                        continue;
                    }
                    // <shardset>-<total>-<first>-<last>
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let parts: Vec<u32> = name
                        .rsplitn(4, '-')
                        .take(3)
                        .filter_map(|p| p.parse().ok())
                        .collect();
                    let [last, first, total] = parts[..] else {
                        continue;
                    };
                    for shard in first..=last {
                        let record = ShardStatus {
                            state: ShardState::Ready,
                            guilds: 0,
                            pod: name.clone(),
                            reason: None,
                            updated_at_ms: 1,
                            layout_revision: revision,
                        };
                        let json = serde_json::to_string(&record).unwrap_or_default();
                        let _: Result<(), _> = conn.set(keys.status(total, shard), json).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Self { task })
    }
}

impl Drop for WorkerStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a ShardSet of these scenarios talks to, on the host beside the operator: the fake
/// Discord (accepting [`TOKEN`] only) as its REST base, and a real Redis.
pub struct Stage {
    pub fake: RunningFake,
    pub redis: Redis,
}

impl Stage {
    /// The fake Discord with a bot in `guilds` guilds, and a Redis.
    pub async fn new(guilds: u32) -> anyhow::Result<Self> {
        let config = Config {
            token: Some(TOKEN.into()),
            guilds,
            ..Config::default()
        };
        let fake = FakeDiscord::spawn(config, "127.0.0.1:0".parse()?).await?;
        Ok(Self {
            fake,
            redis: Redis::start()?,
        })
    }

    /// [`Stage::new`], and the Secret `bot-token` holding [`TOKEN`] in `ns`.
    pub async fn with_token(ns: &TestNamespace, guilds: u32) -> anyhow::Result<Self> {
        let stage = Self::new(guilds).await?;
        put_secret(ns, "bot-token", &[("token", TOKEN)]).await?;
        Ok(stage)
    }

    /// A ShardSet manifest using this stage's fake Discord and Redis.
    pub fn manifest(&self, name: &str, spec: serde_json::Value) -> String {
        shardset_manifest(name, &self.fake.api_url(), &self.redis.url(), spec)
    }

    pub async fn shutdown(self) {
        self.fake.shutdown().await;
    }
}

/// The bot id the fake answers on `/users/@me`.
pub fn fake_application_id() -> u64 {
    Config::default().application_id
}

/// Creates (or replaces) the Secret `name` with `data`.
pub async fn put_secret(
    ns: &TestNamespace,
    name: &str,
    data: &[(&str, &str)],
) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))?;
    let api = ns.api::<Secret>();
    if api.get_opt(name).await?.is_some() {
        api.replace(name, &PostParams::default(), &secret).await?;
    } else {
        api.create(&PostParams::default(), &secret).await?;
    }
    Ok(())
}

/// A ShardSet manifest (JSON, for `kubectl apply`) running the probe image; `spec` is merged
/// over these defaults.
pub fn shardset_manifest(
    name: &str,
    api_url: &str,
    redis_url: &str,
    spec: serde_json::Value,
) -> String {
    let mut base = serde_json::json!({
        "apiVersion": "shardset.io/v1alpha1",
        "kind": "ShardSet",
        "metadata": {"name": name},
        "spec": {
            "image": WORKER_IMAGE,
            "tokenSecretRef": {"name": "bot-token", "key": "token"},
            "redis": {"url": redis_url},
            "gateway": {"apiUrl": api_url},
            "pod": {"imagePullPolicy": "Never"},
        }
    });
    if let (Some(target), Some(extra)) = (base["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    base.to_string()
}

/// Waits until the operator has started `more` reconciles beyond `since`.
pub async fn wait_reconciles(
    op: &Operator,
    since: f64,
    more: f64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = op.metrics().await?.reconciles();
        if now >= since + more {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the operator reconciled {} times in {timeout:?}, expected {more}",
                now - since
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// All Events of the namespace as YAML text (to search for a leaked token).
pub fn events_yaml(ns: &TestNamespace) -> String {
    ns.kubectl(&["get", "events", "-o", "yaml"])
        .unwrap_or_default()
}

/// Pod events of the ShardSet `shardset` as they happen: returns the most pods that were
/// terminating at the same time, observed until `stop` resolves.
pub async fn max_terminating_while<F: std::future::Future>(
    ns: &TestNamespace,
    shardset: &str,
    stop: F,
) -> anyhow::Result<(usize, F::Output)> {
    let api = ns.api::<Pod>();
    let selector = format!("shardset.io/shardset={shardset}");
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    let mut stream = std::pin::pin!(kube::runtime::reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&selector))
    ));
    let mut stop = std::pin::pin!(stop);
    let mut most = 0;
    loop {
        tokio::select! {
            out = &mut stop => return Ok((most, out)),
            item = stream.next() => {
                match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("watch failed: {e}"),
                    None => bail!("watch ended"),
                }
                let terminating = reader
                    .state()
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_some())
                    .count();
                most = most.max(terminating);
            }
        }
    }
}
