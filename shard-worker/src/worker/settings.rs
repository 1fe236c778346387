//! A worker's settings: the pod env the operator writes (`shardset_contract::env`), each with a
//! flag of the same meaning for runs by hand. The secrets (`DISCORD_TOKEN`, `REDIS_PASSWORD`,
//! `NATS_PASSWORD`, `NATS_TOKEN`) are env only and not part of them:
//! [`super::builder::Builder`] reads those.

use std::net::SocketAddr;

use clap::Parser;
use shardset_contract::rest::DEFAULT_API_URL;
use shardset_contract::{GatewayCompression, env};

use crate::bus::BusSettings;
use crate::gateway::ratelimit::DISCORD_SEND_WINDOW_MS;
use crate::gateway::session::{DEFAULT_SILENT_BEATS, MAX_SILENT_BEATS};

/// What a worker runs and how; `FORWARD_URL` and `REPLY_TO_MESSAGES` concern the default handler
/// only. Flatten it into a binary's own arguments (`#[command(flatten)]`), or read the pod env
/// alone with [`Settings::from_env`].
#[derive(Debug, Clone, Parser)]
pub struct Settings {
    /// First shard id of this worker (inclusive).
    #[arg(long, env = env::SHARD_FIRST)]
    pub shard_first: u32,
    /// Last shard id of this worker (inclusive).
    #[arg(long, env = env::SHARD_LAST)]
    pub shard_last: u32,
    /// Shard count of the layout (`num_shards`).
    #[arg(long, env = env::SHARD_TOTAL)]
    pub shard_total: u32,
    /// Override of Discord's max_concurrency (else read from GET /gateway/bot).
    #[arg(long, env = env::MAX_CONCURRENCY)]
    pub max_concurrency: Option<u32>,
    /// Redis shared by every pod of the bot.
    #[arg(long, env = env::REDIS_URL)]
    pub redis_url: String,
    /// CA certificates (PEM) a `rediss://` Redis is trusted by (default: the public roots).
    #[arg(long, env = env::REDIS_CA_FILE)]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Discord REST base; the gateway URL comes from GET /gateway/bot.
    #[arg(long, env = env::DISCORD_API_URL, default_value = DEFAULT_API_URL)]
    pub discord_api_url: String,
    /// Gateway intents bitfield (default: GUILDS | GUILD_MESSAGES).
    #[arg(long, env = env::DISCORD_INTENTS, default_value_t = 513)]
    pub intents: u64,
    /// This layout's name (default: the shard total).
    #[arg(long, env = env::SHARDSET_LAYOUT)]
    pub layout: Option<String>,
    /// The owning ShardSet (logs).
    #[arg(long, env = env::SHARDSET_NAME, default_value = "")]
    pub shardset: String,
    /// This pod's name (leases, status records); default: the host name.
    #[arg(long, env = env::POD_NAME)]
    pub pod: Option<String>,
    /// Session starts never spent.
    #[arg(long, env = env::IDENTIFY_RESERVE, default_value_t = 0)]
    pub identify_reserve: u32,
    /// Identify window in ms (Discord: 5000; shorter only against a time-scaled fake).
    #[arg(long, env = env::IDENTIFY_WINDOW_MS, default_value_t = shardset_contract::DISCORD_IDENTIFY_WINDOW_MS)]
    pub identify_window_ms: u64,
    /// Extra hold of a used gate after the window, in ms (default: 300 at Discord's window, a
    /// lost Identify segment resent; 100 at a shorter window, against a fake).
    #[arg(long, env = env::IDENTIFY_MARGIN_MS)]
    pub identify_margin_ms: Option<u64>,
    /// Transport compression of the gateway connections: zstd-stream, zlib-stream or none.
    #[arg(long, env = env::GATEWAY_COMPRESSION, default_value_t = GatewayCompression::default())]
    pub gateway_compression: GatewayCompression,
    /// Window of the send limit (120 commands per window per connection), in ms (Discord:
    /// 60000; shorter only against a time-scaled fake).
    #[arg(long, env = env::GATEWAY_SEND_WINDOW_MS, default_value_t = DISCORD_SEND_WINDOW_MS)]
    pub gateway_send_window_ms: u64,
    /// Heartbeats in a row that may go without an ACK before the connection counts as silent
    /// (a zombie) and is closed and resumed: 1 (Discord's rule) to 3.
    #[arg(
        long,
        env = env::GATEWAY_SILENT_BEATS,
        default_value_t = DEFAULT_SILENT_BEATS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SILENT_BEATS))
    )]
    pub gateway_silent_beats: u32,
    /// How long saved sessions stay resumable, in ms.
    #[arg(long, env = env::RESUME_WINDOW_MS, default_value_t = 180_000)]
    pub resume_window_ms: u64,
    /// `W` of the hand-over protocol in ms (docs/resharding.md); the operator sets it.
    #[arg(long, env = env::HANDOVER_WINDOW_MS, default_value_t = shardset_contract::DEFAULT_HANDOVER_WINDOW_MS)]
    pub handover_window_ms: u64,
    /// Lifetime of a hand-over claim in ms (at least 3 × the window).
    #[arg(long, env = env::HANDOVER_CLAIM_TTL_MS, default_value_t = shardset_contract::DEFAULT_HANDOVER_CLAIM_TTL_MS)]
    pub handover_claim_ttl_ms: u64,
    /// Forward every dispatch as JSON to this in-pod endpoint.
    #[arg(long, env = env::FORWARD_URL)]
    pub forward_url: Option<String>,
    /// Answer each MESSAGE_CREATE (while this layout is active) with a REST message `ack <id>`.
    #[arg(long, env = env::REPLY_TO_MESSAGES)]
    pub reply_to_messages: bool,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = env::WORKER_LISTEN, default_value_t = SocketAddr::from(([0, 0, 0, 0], shardset_contract::WORKER_HTTP_PORT)))]
    pub listen: SocketAddr,
    /// Also serve the twilight-compatible Identify queue (`GET /?shard=N`, shard ids of this
    /// layout, one request per shard at a time) on this address. Every `200` spends a session
    /// start: a bare port binds to 127.0.0.1 only; with `QUEUE_TOKEN` set (env only) every
    /// request must carry it as a bearer token. Give a full address (`0.0.0.0:8081`) only with
    /// the token, or behind a NetworkPolicy.
    #[arg(long, value_parser = parse_queue_listen)]
    pub queue_listen: Option<SocketAddr>,
    /// The bus every dispatch is published to (`NATS_URL`, `SHARDSET_STREAM`, …).
    #[command(flatten)]
    pub bus: BusSettings,
}

impl Settings {
    /// The settings from the environment alone (no command line): what a bot's own `main`
    /// reads in a pod the operator created.
    pub fn from_env() -> Result<Self, clap::Error> {
        Self::try_parse_from(["shard-worker"])
    }

    /// The layout's name: `SHARDSET_LAYOUT`, else the shard total.
    pub fn layout_name(&self) -> String {
        self.layout
            .clone()
            .unwrap_or_else(|| shardset_contract::layout_name(self.shard_total))
    }

    /// This pod's name: `POD_NAME`, else the host name, else one made of the process id.
    pub fn pod_name(&self) -> String {
        self.pod
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("shard-worker-{}", std::process::id()))
    }
}

/// `--queue-listen`: `PORT` (loopback only) or `HOST:PORT`.
fn parse_queue_listen(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is neither a port nor an address like 127.0.0.1:8081"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_queue_port_listens_on_loopback_only() {
        assert_eq!(
            parse_queue_listen("8081"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8081)))
        );
        assert_eq!(
            parse_queue_listen("0.0.0.0:8081"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 8081)))
        );
        assert!(parse_queue_listen("everywhere").is_err());
    }

    #[test]
    fn flags_fill_the_settings_and_the_rest_defaults_as_the_contract_says() {
        // Each env variable is read through the same attribute as its flag (`env = ...`), so
        // the flags stand for both here (a test cannot set the process env safely).
        let settings = Settings::try_parse_from([
            "shard-worker",
            "--shard-first=4",
            "--shard-last=7",
            "--shard-total=16",
            "--redis-url=redis://r:6379",
        ])
        .expect("settings");
        assert_eq!(
            (
                settings.shard_first,
                settings.shard_last,
                settings.shard_total
            ),
            (4, 7, 16)
        );
        assert_eq!(settings.layout_name(), "16");
        assert_eq!(settings.intents, 513);
        assert_eq!(settings.discord_api_url, DEFAULT_API_URL);
        assert_eq!(settings.gateway_compression, GatewayCompression::ZstdStream);
        assert_eq!(settings.gateway_send_window_ms, 60_000);
        assert_eq!(settings.gateway_silent_beats, 1, "Discord's rule");
        // One shard of one, with one more flag.
        let one_shard_with = |flag: &str| {
            Settings::try_parse_from([
                "shard-worker",
                "--shard-first=0",
                "--shard-last=0",
                "--shard-total=1",
                "--redis-url=redis://r:6379",
                flag,
            ])
        };
        let zlib = one_shard_with("--gateway-compression=zlib-stream").expect("settings");
        assert_eq!(zlib.gateway_compression, GatewayCompression::ZlibStream);
        let with_silent_beats = |beats: &str| {
            one_shard_with(&format!("--gateway-silent-beats={beats}"))
                .map(|s| s.gateway_silent_beats)
        };
        assert_eq!(with_silent_beats("3").ok(), Some(3));
        for refused in ["0", "4", "-1", "x"] {
            assert!(with_silent_beats(refused).is_err(), "{refused}");
        }
        assert!(one_shard_with("--gateway-compression=gzip").is_err());
        assert!(Settings::try_parse_from(["shard-worker", "--shard-first=1"]).is_err());
    }
}
