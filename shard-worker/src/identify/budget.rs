//! The session start budget as the gate needs it: stored in Redis by `sync_budget.lua` with
//! Discord's word for its period (never raised within a period, never above that word), and read
//! from `GET /gateway/bot` when Redis has none, once at a time per process
//! (docs/redis-protocol.md, "The budget").

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;
use tracing::{error, warn};

use shardset_contract::Keys;
use shardset_contract::redis_link::RedisLink;
use shardset_contract::rest::{DiscordRest, RestError};

static SYNC_BUDGET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("sync_budget.lua")));

/// Stores the budget read from `GET /gateway/bot` with Discord's word for its period (never
/// raising a lower count within a period; a new period starts from Discord's count).
pub(super) async fn store(
    conn: &RedisLink,
    keys: &Keys,
    remaining: u32,
    reset_after_ms: u64,
) -> redis::RedisResult<i64> {
    SYNC_BUDGET
        .key(keys.budget())
        .key(keys.budget_period())
        .arg(remaining)
        .arg(reset_after_ms)
        .invoke_async(&mut conn.clone())
        .await
}

/// Least time between two reads of the budget from Discord by one process.
const BUDGET_READ_SPACING: Duration = Duration::from_secs(2);
/// Longest wait between failed reads.
const BUDGET_READ_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The wait after `failures` failed budget reads in a row: 1 s, doubling, at most 60 s; never
/// shorter than Discord's `retry_after`.
fn budget_read_backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let exp = Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(16));
    exp.min(BUDGET_READ_BACKOFF_MAX)
        .max(retry_after.unwrap_or_default())
}

/// The process's reads of the budget from `GET /gateway/bot`: one at a time, spaced, backing off
/// after failures, honouring 429s, and never again after a 401. Shared by every clone of the
/// queue, so the head waiters of many buckets cause one read, not one each.
#[derive(Debug)]
pub(super) struct BudgetReads {
    /// Reads the budget; `None`: another process must store it.
    rest: Option<DiscordRest>,
    state: tokio::sync::Mutex<ReadState>,
}

#[derive(Debug, Default)]
struct ReadState {
    /// No read before this (spacing after a read, backoff after a failure, `retry_after`).
    not_before: Option<Instant>,
    failures: u32,
    /// Discord refused the token: asking again cannot help.
    refused: bool,
}

/// What a waiter that found the budget unknown does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BudgetRead {
    /// The budget was read and stored: ask the gate again now.
    Stored,
    /// Ask again after this long (a read is spaced, backing off, or rate limited).
    Later(Duration),
    /// Discord refused the token: no Identify can succeed.
    Refused,
}

impl BudgetReads {
    pub(super) fn new(rest: Option<DiscordRest>) -> Self {
        Self {
            rest,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// Reads the budget from Discord into Redis, unless a read is in flight (then waits for
    /// it), was done moments ago, or must wait (backoff, `retry_after`, a refused token).
    pub(super) async fn refresh(&self, conn: &RedisLink, keys: &Keys) -> BudgetRead {
        let Some(rest) = &self.rest else {
            // Another process must store it.
            return BudgetRead::Later(BUDGET_READ_SPACING);
        };
        let mut state = self.state.lock().await;
        if state.refused {
            return BudgetRead::Refused;
        }
        if let Some(at) = state.not_before {
            let now = Instant::now();
            if at > now {
                return BudgetRead::Later(at - now);
            }
        }
        match rest.gateway_bot().await {
            Ok(bot) => {
                state.failures = 0;
                state.not_before = Some(Instant::now() + BUDGET_READ_SPACING);
                let limit = bot.session_start_limit;
                if let Err(e) = store(conn, keys, limit.remaining, limit.reset_after).await {
                    warn!(error = %e, "cannot store the session start budget in Redis");
                }
                BudgetRead::Stored
            }
            Err(RestError::Unauthorized) => {
                error!(
                    "Discord refused the token (401) when reading the session start budget; no Identify will be attempted"
                );
                state.refused = true;
                BudgetRead::Refused
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let retry_after = match &e {
                    RestError::RateLimited { retry_after } => Some(*retry_after),
                    _ => None,
                };
                let wait = budget_read_backoff(state.failures, retry_after);
                state.not_before = Some(Instant::now() + wait);
                warn!(error = %e, reason = e.metric_label(), "cannot read the session start budget; next read in {wait:?}");
                BudgetRead::Later(wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_budget_reads_back_off_and_honour_retry_after() {
        let waits: Vec<u64> = (1..=8)
            .map(|n| budget_read_backoff(n, None).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            budget_read_backoff(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            budget_read_backoff(7, Some(Duration::from_millis(10))),
            BUDGET_READ_BACKOFF_MAX
        );
    }
}
