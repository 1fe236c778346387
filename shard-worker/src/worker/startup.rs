//! What a worker asks before its shards may start, and what it does when it cannot start them:
//! Discord's answers with retries (a refused token stops at once), and the refusal reported on
//! every shard (board, `/readyz`, `P:status`) until shutdown, never retried.
//!
//! A token Discord refuses (401) or a configuration that must not run (a `MAX_CONCURRENCY` that
//! does not divide Discord's) does not end the process: a restart would only call Discord again
//! (a crash loop spends requests). The worker reports it and waits for its shutdown.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, warn};

use super::board::Board;
use super::bookkeeper::unix_ms;
use crate::shard::records::Records;
use shardset_contract::redis_link::RedisLink;
use shardset_contract::rest::{CurrentUser, DiscordRest, GatewayBot, RestError};
use shardset_contract::{Keys, ShardState, ShardStatus};

/// The reason every shard reports when Discord refused the token.
pub const REFUSED_TOKEN: &str = "invalid token (401)";

/// Why the worker cannot start its shards.
pub(super) enum Refused {
    /// Discord refused the token (401): report it and wait; never retry.
    Token,
    /// Our own configuration is wrong (a malformed REST base).
    Config(String),
}

/// `GET /users/@me` (the bot id: the Redis prefix) and `GET /gateway/bot` (gateway URL, bucket
/// count, budget), each asked until Discord answers. `None`: shut down while waiting.
pub(super) async fn ask_discord(
    rest: &DiscordRest,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(CurrentUser, GatewayBot)>, Refused> {
    let Some(me) = with_retries("GET /users/@me", shutdown, || rest.current_user()).await? else {
        return Ok(None);
    };
    let bot = with_retries("GET /gateway/bot", shutdown, || rest.gateway_bot()).await?;
    Ok(bot.map(|bot| (me, bot)))
}

/// Asks until Discord answers; a refused token stops at once (no retry loop on 401). `None`:
/// shut down while waiting.
async fn with_retries<T, F, Fut>(
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
    mut call: F,
) -> Result<Option<T>, Refused>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RestError>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match call().await {
            Ok(value) => return Ok(Some(value)),
            Err(RestError::Unauthorized) => {
                error!("{what}: {}", RestError::Unauthorized);
                return Err(Refused::Token);
            }
            Err(RestError::InvalidBase(base)) => {
                return Err(Refused::Config(format!(
                    "{what}: invalid Discord API URL {base:?}"
                )));
            }
            Err(e) => {
                let wait = match &e {
                    RestError::RateLimited { retry_after } => *retry_after,
                    _ => delay,
                };
                warn!(error = %e, "{what} failed; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Where a refusal is reported besides the board: the bot's Redis (when the bot id is known:
/// from `/users/@me`, or read from the token) and the layout's shard total.
pub(super) struct RefusalRecords<'a> {
    pub bot_id: Option<u64>,
    /// The bot's Redis, when a connection could be made.
    pub redis: Option<RedisLink>,
    pub shard_total: u32,
    pub pod: &'a str,
}

/// Shards that must not start (a refused token, a wrong configuration): every shard of `board`
/// Fatal with `reason` (metrics, `/readyz`) and, when Redis can be named, in `P:status` too
/// (refreshed within its TTL) until `shutdown`. No retry: a restart would only ask again.
pub(super) async fn report_refusal(
    board: &Board,
    reason: &str,
    to: RefusalRecords<'_>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shards: Vec<u32> = board.slots().map(|slot| slot.shard).collect();
    for &shard in &shards {
        board.set_state(shard, ShardState::Fatal, Some(reason.to_owned()));
    }
    error!(
        reason,
        "every shard stays down until the pod is replaced with a working configuration (no retries)"
    );
    let records = match (to.bot_id, to.redis) {
        (Some(id), Some(conn)) => Some(Records::new(conn, Keys::new(id), to.shard_total)),
        _ => None,
    };
    let status_ttl = Duration::from_secs(30);
    loop {
        if let Some(records) = &records {
            for &shard in &shards {
                let status = ShardStatus {
                    state: ShardState::Fatal,
                    guilds: 0,
                    pod: to.pod.to_owned(),
                    reason: Some(reason.to_owned()),
                    updated_at_ms: unix_ms(),
                    layout_revision: 0,
                    lapses: 0,
                    behind_ms: None,
                    bus_accepting: None,
                };
                if let Err(e) = records.write_status(shard, &status, status_ttl).await {
                    warn!(error = %e, "cannot report the refusal in Redis");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(status_ttl / 3) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
