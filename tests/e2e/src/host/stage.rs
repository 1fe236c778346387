//! What a ShardSet of the operator scenarios talks to, on the host beside the operator: the fake
//! Discord in-process (accepting [`TOKEN`] only) as its REST base, and a real redis-server.

use fake_discord::{Config, FakeDiscord, RunningFake};
use redis_test_server::RedisServer;

use crate::TestNamespace;
use crate::manifest::ShardSetManifest;
use crate::probe::PROBE_IMAGE;
use crate::secrets::{TOKEN_SECRET, put_token};

/// The image standing in for the worker (serves `/healthz` and `/readyz`).
pub const WORKER_IMAGE: &str = PROBE_IMAGE;
/// The token the fake Discord accepts in these tests.
pub const TOKEN: &str = "e2e.right.token-7f3a9c";

/// The bot id the fake answers on `/users/@me`.
pub fn fake_application_id() -> u64 {
    Config::default().application_id
}

/// The fake Discord and a Redis, both on the host.
pub struct Stage {
    pub fake: RunningFake,
    pub redis: RedisServer,
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
            redis: RedisServer::start(),
        })
    }

    /// [`Stage::new`], and the Secret [`TOKEN_SECRET`] holding [`TOKEN`] in `ns`.
    pub async fn with_token(ns: &TestNamespace, guilds: u32) -> anyhow::Result<Self> {
        let stage = Self::new(guilds).await?;
        put_token(ns, TOKEN_SECRET, TOKEN).await?;
        Ok(stage)
    }

    /// A ShardSet running the probe image against this stage's fake Discord and Redis.
    pub fn shardset(&self, name: &str) -> ShardSetManifest {
        ShardSetManifest::new(name, WORKER_IMAGE)
            .redis_url(&self.redis.url())
            .api_url(&self.fake.api_url())
    }

    /// Stops the fake (the Redis stops when the stage is dropped).
    pub async fn shutdown(self) {
        self.fake.shutdown().await;
    }
}
