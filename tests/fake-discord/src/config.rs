//! Every knob of the fake Discord, as command-line flags (clap) and as a plain struct for tests.
//!
//! Defaults are Discord's real values (source: discord-api-docs `developers/events/gateway.mdx`,
//! `change-log.mdx`): a 5 s Identify window, 1,000 session starts per 24 h, 120 commands per
//! 60 s, 2,500 guilds per shard, a 41.25 s heartbeat interval, one all-members request per guild
//! per 30 s. The `*-ms` flags scale time down so that scenarios with hundreds of shards finish in
//! seconds.

use clap::Args;

/// The fake's configuration. `Config::default()` equals running `fake-discord` with no flags.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Base URL that clients reach the fake at (`ws://fake-discord.ns.svc:8080`). The gateway `url`
    /// of `/gateway/bot` and READY's `resume_gateway_url` are built from it. Unset: derived from
    /// each request's `Host` header, which is right behind a Kubernetes Service too.
    #[arg(long, env = "FAKE_DISCORD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The bot token clients must present (`Bot ` prefix optional). Unset: any non-empty token
    /// is accepted (handy for demos; a wrong-token test needs it set).
    #[arg(long, env = "FAKE_DISCORD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The bot's user id, also its application id (READY `user.id`, `application.id`,
    /// `GET /users/@me`).
    #[arg(long, default_value_t = 1_311_000_000_000_000_000)]
    pub application_id: u64,

    /// The bot's username.
    #[arg(long, default_value = "fake-bot")]
    pub bot_username: String,

    /// Number of guilds the bot is in, spread evenly over any shard count (up to millions).
    #[arg(long, default_value_t = 100)]
    pub guilds: u32,

    /// Guilds per recommended shard: `/gateway/bot` answers `shards = ceil(guilds / this)`.
    #[arg(long, default_value_t = 1_000)]
    pub guilds_per_shard: u32,

    /// Most guilds one session may hold; more closes with 4011 (Sharding required).
    #[arg(long, default_value_t = 2_500)]
    pub max_guilds_per_shard: u32,

    /// Large-bot sharding: `num_shards` must be a multiple of this, else 4010 (1 = any count).
    #[arg(long, default_value_t = 1)]
    pub shard_multiple: u32,

    /// `max_concurrency`: Identify buckets (`shard_id % max_concurrency`).
    #[arg(long, default_value_t = 1)]
    pub max_concurrency: u32,

    /// One Identify per bucket per this many ms, measured at arrival.
    #[arg(long, default_value_t = 5_000)]
    pub identify_window_ms: u64,

    /// Session starts (Identifies) allowed per budget period (`session_start_limit.total`).
    #[arg(long, default_value_t = 1_000)]
    pub session_start_limit: u32,

    /// Session starts left at startup (`session_start_limit.remaining`); default: the limit.
    #[arg(long)]
    pub session_start_remaining: Option<u32>,

    /// Length of the budget period in ms (Discord: 24 h); `remaining` refills when it ends.
    #[arg(long, default_value_t = 86_400_000)]
    pub budget_reset_ms: u64,

    /// Heartbeat interval sent in Hello, in ms.
    #[arg(long, default_value_t = 41_250)]
    pub heartbeat_interval_ms: u64,

    /// A heartbeat arriving more than the interval plus this many ms after the connection's
    /// previous one (or after Hello) is recorded as late in `/control/late_heartbeats`; the
    /// connection is closed only at the heartbeat timeout.
    #[arg(long, default_value_t = 250)]
    pub heartbeat_slack_ms: u64,

    /// How long a session stays resumable after its connection closed with a code other than
    /// 1000/1001 or dropped, in ms.
    #[arg(long, default_value_t = 180_000)]
    pub resume_window_ms: u64,

    /// Gateway commands allowed per connection per send window (heartbeats included); more
    /// closes with 4008.
    #[arg(long, default_value_t = 120)]
    pub send_limit: u32,

    /// The send window in ms (sliding: no window of this length may hold more than the limit).
    #[arg(long, default_value_t = 60_000)]
    pub send_window_ms: u64,

    /// op 8: one request for all members of a guild (`query: ""`, `limit: 0`) per guild per this
    /// many ms, bot-wide; one more gets a RATE_LIMITED dispatch instead of chunks.
    #[arg(long, default_value_t = 30_000)]
    pub member_request_window_ms: u64,

    /// After an injected op 7 Reconnect, close the connection (4000) if the client has not
    /// within this many ms.
    #[arg(long, default_value_t = 5_000)]
    pub reconnect_grace_ms: u64,

    /// Privileged intents the bot is allowed (bit mask of GUILD_MEMBERS 1<<1, GUILD_PRESENCES
    /// 1<<8, MESSAGE_CONTENT 1<<15); others close with 4014. Default: all three.
    #[arg(long, default_value_t = crate::rules::PRIVILEGED_INTENTS)]
    pub privileged_intents: u64,

    /// Dispatches kept per session for Resume replay (oldest dropped first).
    #[arg(long, default_value_t = 4_096)]
    pub replay_buffer: usize,

    /// zlib level for `compress=zlib-stream` (0–9). Level 1 deflated a message about four times
    /// faster than 6 in `make bench-fake`, for a larger stream: right for a load generator that
    /// shares cores with the clients it tests.
    #[arg(long, default_value_t = 1)]
    pub zlib_level: u32,

    /// zstd level for `compress=zstd-stream` (1–22).
    #[arg(long, default_value_t = 1)]
    pub zstd_level: i32,

    /// Synthetic MESSAGE_CREATE load at startup, in events per second over all guilds (0 = off;
    /// a layout of S shards receives about rate/S per shard). Changeable via the control API.
    #[arg(long, default_value_t = 0)]
    pub load_rate: u32,

    /// Approximate size in bytes of each synthetic MESSAGE_CREATE's `d`.
    #[arg(long, default_value_t = 1_024)]
    pub load_payload_bytes: usize,

    /// Percentage of synthetic messages that are DMs (no guild: shard 0 of each layout only).
    #[arg(long, default_value_t = 0)]
    pub load_dm_percent: u8,

    /// Synthetic messages remembered for `/control/replies` (oldest forgotten first).
    #[arg(long, default_value_t = 2_000_000)]
    pub reply_tracking: usize,

    /// `POST /channels/{id}/messages` with a `nonce` and `enforce_nonce: true`: a create with a
    /// nonce the channel saw within this many ms returns that message instead of a new one
    /// (message.mdx: "checked for uniqueness in the past few minutes").
    #[arg(long, default_value_t = 300_000)]
    pub nonce_window_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        // One source of truth for defaults: the clap attributes above. Env variables are not
        // read here, so a test's `Config::default()` is the same on every machine.
        let mut config = <Defaults as clap::Parser>::parse_from(["fake-discord"]).config;
        config.public_url = None;
        config.token = None;
        config
    }
}

impl Config {
    /// Session starts left at startup.
    pub fn initial_remaining(&self) -> u32 {
        self.session_start_remaining
            .unwrap_or(self.session_start_limit)
            .min(self.session_start_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_discords_values() {
        let config = Config::default();
        assert_eq!(config.identify_window_ms, 5_000);
        assert_eq!(config.session_start_limit, 1_000);
        assert_eq!(config.send_limit, 120);
        assert_eq!(config.send_window_ms, 60_000);
        assert_eq!(config.member_request_window_ms, 30_000);
        assert_eq!(config.max_guilds_per_shard, 2_500);
        assert_eq!(config.max_concurrency, 1);
        assert_eq!(config.initial_remaining(), 1_000);
    }
}
