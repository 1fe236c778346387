//! A scenario: a real redis-server, the fake Discord in-process, and helpers to wait on them.

use std::future::Future;
use std::time::Duration;

use fake_discord::control::{IdentifyOutcome, LoadSettings, SessionInfo};
use fake_discord::{Config, FakeDiscord, RunningFake};

use super::redis::{Options, RedisServer};
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
        Self::start_with_redis(config, Options::default()).await
    }

    /// A redis-server started as `redis` says (e.g. TLS) and a fake with `config`.
    pub async fn start_with_redis(config: Config, redis: Options) -> Self {
        shardset_contract::rest::install_crypto_provider();
        let redis = RedisServer::start_with(redis);
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

    /// Worker `index` of equal workers of `per_worker` shards each (shards `index * per_worker..`
    /// of `total`), forwarding its dispatches to `forward_url`.
    pub fn forwarding_worker(
        &self,
        pod: &str,
        index: u32,
        per_worker: u32,
        total: u32,
        forward_url: &str,
    ) -> WorkerSpec {
        let first = index * per_worker;
        let mut spec = self.spec(pod, first, first + per_worker - 1, total);
        spec.forward_url = Some(forward_url.to_owned());
        spec
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

    /// The fake's synthetic load: `rate` MESSAGE_CREATE a second of about 256 bytes (0 stops it).
    pub fn set_load(&self, rate: u32) {
        self.set_load_with_dms(rate, 0);
    }

    /// [`Scenario::set_load`] with `dm_percent` of the messages direct messages (events
    /// without a guild, for bots with the DIRECT_MESSAGES intent).
    pub fn set_load_with_dms(&self, rate: u32, dm_percent: u8) {
        self.fake.state().load.send_replace(LoadSettings {
            rate,
            payload_bytes: 256,
            dm_percent,
        });
    }

    /// Every shard of `shards` has a live session that was resumed, and the fake saw no
    /// Identify beyond the `identifies` it had seen before.
    pub fn assert_resumed(&self, shards: impl IntoIterator<Item = u32>, identifies: usize) {
        assert_eq!(
            self.identifies(),
            identifies,
            "no new Identify: every session was resumed"
        );
        for shard in shards {
            let session = self.live_session(shard).expect("live session");
            assert!(session.resumes >= 1, "shard {shard} resumed: {session:?}");
        }
    }

    pub fn assert_no_violations(&self) {
        let violations = self.fake.state().violations();
        assert!(violations.is_empty(), "violations: {violations:#?}");
    }

    /// Never two live sessions of one shard (the fake's `overlaps`).
    pub fn assert_no_overlaps(&self) {
        let overlaps = self.fake.state().overlaps();
        assert!(
            overlaps.is_empty(),
            "two live sessions of a shard: {overlaps:#?}"
        );
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
