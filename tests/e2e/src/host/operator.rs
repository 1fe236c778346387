//! The `shardset-operator` binary as a process on the host, watching one test namespace (with
//! leader election on a Lease there): built once per test binary, started with the scenario's
//! flags, read through its log and its `/metrics`, stopped by signal, killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::Metrics;
use crate::shardsets::release_finalizers;
use crate::waits::{Look, poll};
use crate::{TestNamespace, install_crd};

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
        let addr: SocketAddr = format!("127.0.0.1:{}", redis_test_server::free_port()).parse()?;
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
                // The fake Discord runs in the test process, on loopback.
                "--trusted-api-hosts",
                "127.0.0.1",
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

    /// Its `/metrics`, parsed. Waits up to 30 s for the server.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        poll(
            "the operator's /metrics",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                Ok(match http_get(self.addr, "/metrics").await {
                    Ok(body) => Look::Done(Metrics::parse(&body)),
                    Err(e) => Look::NotYet(format!("{e:#}")),
                })
            },
        )
        .await
    }

    /// Waits until this replica leads and runs its controller.
    pub async fn wait_leading(&self, timeout: Duration) -> anyhow::Result<()> {
        poll(
            &format!("{} leading", self.identity),
            timeout,
            Duration::from_millis(100),
            || async {
                Ok(if self.metrics().await?.leader() {
                    Look::Done(())
                } else {
                    Look::NotYet("shardset_operator_leader 0".into())
                })
            },
        )
        .await
    }

    /// Waits until it has started `more` reconciles beyond `since`.
    pub async fn wait_reconciles(
        &self,
        since: f64,
        more: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        poll(
            &format!("{more} more reconciles"),
            timeout,
            Duration::from_millis(250),
            || async {
                let now = self.metrics().await?.reconciles();
                Ok(if now >= since + more {
                    Look::Done(())
                } else {
                    Look::NotYet(format!("{} reconciles", now - since))
                })
            },
        )
        .await
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
        release_finalizers(&self.namespace);
    }
}

/// `GET <path>` over HTTP/1.0 (the operator's small server); the body of a 200 answer.
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
