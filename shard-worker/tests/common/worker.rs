//! Real `shard-worker` processes, configured by the env contract, killed on drop; and stopping a
//! worker run in-process (`worker::run`, `Builder::run`).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use shardset_contract::env;

/// What a worker process is started with.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub first: u32,
    pub last: u32,
    pub total: u32,
    pub max_concurrency: Option<u32>,
    pub redis_url: String,
    pub api_url: String,
    pub window_ms: u64,
    pub margin_ms: Option<u64>,
    pub forward_url: Option<String>,
    pub pod: String,
    pub extra_args: Vec<String>,
    /// Extra environment (e.g. `HANDOVER_WINDOW_MS`, or a `DISCORD_TOKEN` of another shape).
    pub extra_env: Vec<(String, String)>,
}

pub struct WorkerProcess {
    child: Option<Child>,
    pub listen: String,
    pub log: PathBuf,
    pub spec: WorkerSpec,
}

/// Stops a worker run in-process: tells it to stop and waits for its task, 20 s at most.
pub async fn stop_in_process<T>(
    stop: &tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<T>,
) -> T {
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the worker stops")
        .expect("task")
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl WorkerProcess {
    pub fn start(spec: WorkerSpec) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!(
            "shard-worker-test-{}-{}-{}.log",
            std::process::id(),
            spec.pod,
            free_port()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shard-worker"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,shard_worker=debug")
            .env(env::SHARD_FIRST, spec.first.to_string())
            .env(env::SHARD_LAST, spec.last.to_string())
            .env(env::SHARD_TOTAL, spec.total.to_string())
            .env(env::REDIS_URL, &spec.redis_url)
            .env(env::DISCORD_API_URL, &spec.api_url)
            .env(env::DISCORD_TOKEN, "test-token-do-not-log")
            .env(env::POD_NAME, &spec.pod)
            .env(env::IDENTIFY_WINDOW_MS, spec.window_ms.to_string())
            .env(env::WORKER_LISTEN, &listen)
            .args(&spec.extra_args)
            .envs(spec.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // Both streams, so a test can read everything the process wrote (the token check).
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        if let Some(c) = spec.max_concurrency {
            command.env(env::MAX_CONCURRENCY, c.to_string());
        }
        if let Some(m) = spec.margin_ms {
            command.env(env::IDENTIFY_MARGIN_MS, m.to_string());
        }
        if let Some(url) = &spec.forward_url {
            command.env(env::FORWARD_URL, url);
        }
        let child = command.spawn().expect("start shard-worker");
        Self {
            child: Some(child),
            listen,
            log,
            spec,
        }
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The `/readyz` status and body, if the worker answers.
    pub async fn readyz(&self) -> Option<(u16, String)> {
        let response = reqwest::get(format!("http://{}/readyz", self.listen))
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.listen)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_readyz(timeout, |code, _| code == 200).await
    }

    /// Waits until `/readyz` satisfies `check`.
    pub async fn wait_readyz(&self, timeout: Duration, check: impl Fn(u16, &str) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some((code, body)) = self.readyz().await
                && check(code, &body)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGKILL, and waits for the exit: no chance to save or close anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!(
                "worker {} log kept at {}",
                self.spec.pod,
                self.log.display()
            );
        }
    }
}
