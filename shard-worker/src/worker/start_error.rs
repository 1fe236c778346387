//! Why a worker could not start, each reason with a fixed metric label.

use std::net::SocketAddr;

use shardset_contract::env;
use shardset_contract::redis_tls::RedisClientError;
use shardset_contract::rest::RestError;

use crate::bus::jetstream;

/// Why a worker could not start. (Discord refusing the token is not one: the worker reports it
/// and waits for shutdown, see [`super::Outcome::refused`].)
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid shard range {first}..={last} of {total} (need first <= last < total)")]
    ShardRange { first: u32, last: u32, total: u32 },
    #[error("{} is not set", env::DISCORD_TOKEN)]
    NoToken,
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The Redis client: a CA bundle that cannot be read or used, or a URL that does not parse.
    #[error(transparent)]
    RedisClient(#[from] RedisClientError),
    #[error(transparent)]
    DiscordApi(#[from] RestError),
    #[error("{0}")]
    Config(String),
    #[error("the bus: {0}")]
    Bus(#[from] jetstream::StartError),
}

impl StartError {
    /// A fixed label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ShardRange { .. } => "shard_range",
            Self::NoToken => "no_token",
            Self::Listen { .. } => "listen",
            Self::RedisClient(e) => e.metric_label(),
            Self::DiscordApi(_) => "discord_api_url",
            Self::Config(_) => "config",
            Self::Bus(_) => "bus",
        }
    }
}
