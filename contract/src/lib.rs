//! The contract between the operator and the worker pods, in one small crate that both depend on:
//! the env variables the operator writes into every worker pod ([`env`], with the values of
//! [`gateway`]), the worker's HTTP endpoints, the Redis key layout of the Identify protocol
//! ([`keys`], documented in `docs/redis-protocol.md`) with the records stored under those keys
//! ([`records`]), the bot token in a type that cannot leak it ([`token`]), the Discord REST calls
//! both sides make ([`rest`]), the names of the bot tier's bus that the worker, the operator and
//! the handler library share ([`bus`], documented in `docs/bus-protocol.md`), the pod's end
//! ([`pod`]: SIGTERM), and the client of the bot's Redis with its TLS trust ([`redis_tls`]).
//!
//! Nothing here speaks the gateway: the operator links this crate, not the worker's WebSocket
//! stack. Apart from [`rest`], [`pod`] and reading a CA file ([`redis_tls`]), nothing does I/O, so both sides (and bots written with other
//! libraries, following the protocol document) agree by construction.

pub mod bus;
pub mod env;
pub mod gateway;
pub mod keys;
pub mod pod;
pub mod records;
pub mod redis_link;
pub mod redis_tls;
pub mod rest;
pub mod token;

pub use gateway::GatewayCompression;
pub use keys::{CLEANED_TTL_MS, Keys, bucket, layout_name};
pub use records::{
    FATAL_MARKER_TTL_MS, FatalMarker, LayoutRoles, Role, SILENT_REASON, SessionRecord, ShardState,
    ShardStatus,
};

/// Default `W` of the hand-over protocol: 10 s.
pub const DEFAULT_HANDOVER_WINDOW_MS: u64 = 10_000;
/// Default lifetime of a claim: 10 min (a claim only has to outlive `2 W`; the slack is cheap).
pub const DEFAULT_HANDOVER_CLAIM_TTL_MS: u64 = 600_000;

/// The handling lag above which a shard counts as behind (`ShardStatus::behind_ms`): `W / 2`.
/// The hand-over's argument needs the two layouts to handle each event less than `W` apart; a
/// layout keeping up within `W / 2` leaves the other half for Discord's delivery skew
/// (`docs/resharding.md`, "What bounds W").
pub fn handover_lag_bound_ms(window_ms: u64) -> u64 {
    window_ms / 2
}

/// Port of the worker's HTTP server (`/healthz`, `/readyz`, `/metrics`).
pub const WORKER_HTTP_PORT: u16 = 8080;
/// Liveness path of the worker.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness path of the worker: 200 when every owned shard is READY or RESUMED.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus metrics path of the worker.
pub const METRICS_PATH: &str = "/metrics";

/// Discord's Identify window: one Identify per rate-limit key per 5 s.
/// Source: discord-api-docs `developers/events/gateway.mdx`, "Session start limit".
pub const DISCORD_IDENTIFY_WINDOW_MS: u64 = 5_000;
