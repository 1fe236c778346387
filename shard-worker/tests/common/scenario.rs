//! A scenario: a real redis-server, the fake Discord in-process, and helpers to wait on them.

use std::future::Future;
use std::time::Duration;

use fake_discord::control::{IdentifyOutcome, SessionInfo};
use fake_discord::{Config, FakeDiscord, RunningFake};

use super::redis::RedisServer;
use super::worker::WorkerSpec;

pub struct Scenario {
    pub redis: RedisServer,
    pub fake: RunningFake,
}

impl Scenario {
    /// Redis and a fake with `max_concurrency`, a scaled Identify window and heartbeat.
    pub async fn start(max_concurrency: u32, window_ms: u64, heartbeat_ms: u64) -> Self {
        Self::start_with(Config {
            max_concurrency,
            identify_window_ms: window_ms,
            heartbeat_interval_ms: heartbeat_ms,
            ..Self::config()
        })
        .await
    }

    /// The scenarios' common fake settings.
    pub fn config() -> Config {
        Config {
            guilds: 256,
            resume_window_ms: 60_000,
            reconnect_grace_ms: 2_000,
            ..Config::default()
        }
    }

    /// Redis and a fake with `config`.
    pub async fn start_with(config: Config) -> Self {
        shardset_contract::rest::install_crypto_provider();
        let redis = RedisServer::start();
        let fake = FakeDiscord::spawn(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("fake Discord");
        Self { redis, fake }
    }

    /// A worker of shards `first..=last` of `total`.
    pub fn spec(&self, pod: &str, first: u32, last: u32, total: u32) -> WorkerSpec {
        WorkerSpec {
            first,
            last,
            total,
            max_concurrency: None,
            redis_url: self.redis.url(),
            api_url: self.fake.api_url(),
            window_ms: self.fake.state().config.identify_window_ms,
            margin_ms: None,
            forward_url: None,
            pod: pod.to_owned(),
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }

    /// Identifies the fake accepted for `shard`.
    pub fn accepted_identifies(&self, shard: u32) -> usize {
        self.fake
            .state()
            .identifies()
            .iter()
            .filter(|i| i.shard == shard && i.outcome == IdentifyOutcome::Accepted)
            .count()
    }

    pub fn identifies(&self) -> usize {
        self.fake.state().identifies().len()
    }

    /// The live (connected, READY) session of `shard`, if any.
    pub fn live_session(&self, shard: u32) -> Option<SessionInfo> {
        self.fake
            .state()
            .sessions()
            .into_iter()
            .find(|s| s.shard == shard && s.connected && s.ready)
    }

    pub fn assert_no_violations(&self) {
        let violations = self.fake.state().violations();
        assert!(violations.is_empty(), "violations: {violations:#?}");
    }
}

/// Polls `check` every 25 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
