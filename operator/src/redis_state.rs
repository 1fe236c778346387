//! The operator's uses of the bot's Redis: reading the shard status records the workers write
//! (`Keys::status`, for `status.guilds`, failed shards and the hand-over's acknowledgements),
//! reading and writing the layouts' roles (`Keys::active_layout`, compare-and-set on its
//! revision), the bot's owner (`Keys::owner`: one ShardSet per bot), a fresh bot's epoch settled
//! before its first pods ([`fresh`]), and deleting all of the bot's keys when its owning ShardSet
//! is deleted.
//!
//! One lazy connection manager per Redis ([`RedisTarget`]: URL, password and CA bundle); a Redis that failed is not tried
//! again for [`RETRY_FIRST`], doubling while it keeps failing up to [`RETRY_AFTER_FAILURE`], so
//! an unreachable Redis never slows every reconcile, and one slow answer (a busy node) holds a
//! reshard back for a second, not for the whole period.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::{AsyncCommands, Script};
use shardset_contract::redis_link::{RedisEndpoint, RedisLink};
use shardset_contract::redis_tls::CaBundle;
use shardset_contract::{Keys, LayoutRoles, ShardStatus};
use tokio::sync::Mutex;

mod fresh;
mod summary;
mod unlink;
pub use fresh::FreshEpoch;
pub use summary::{ShardSummary, redact_url, summarize};
use unlink::unlink_matching;

/// Bound on one Redis round of the operator.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Quiet period after a failure before the same Redis is tried again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(20);
/// How long a Redis is left alone after a first failure (then doubled per failure in a row).
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The operator's record of the token and intents the fatal markers were written under.
fn fatal_basis_key(keys: &Keys) -> String {
    format!("{}:fatal-basis", keys.prefix())
}

/// How long a Redis that failed `failures` times in a row is left alone.
fn parked_for(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RETRY_AFTER_FAILURE)
}

/// Where a bot's Redis is and how to reach it: `spec.redis.url`, the password of
/// `spec.redis.secretRef` and the CA bundle of `spec.redis.tls.caSecretRef` (as read this pass).
/// (No `Debug`: it holds the password.)
#[derive(Clone, Copy, Hash)]
pub struct RedisTarget<'a> {
    pub url: &'a str,
    pub password: Option<&'a str>,
    /// The CA a `rediss://` server is trusted by (else the compiled-in public roots).
    pub ca: Option<&'a CaBundle>,
}

impl<'a> RedisTarget<'a> {
    /// A Redis without a password or a CA bundle of its own.
    pub fn plain(url: &'a str) -> Self {
        Self {
            url,
            password: None,
            ca: None,
        }
    }
}

/// Why Redis could not be used. Messages carry the URL (as the user wrote it, minus any
/// password in it) and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot use Redis at {url}: {reason}")]
pub struct RedisError {
    pub url: String,
    pub reason: String,
}

/// Writes the roles document only if the stored one still has the revision the decision was
/// made on (`ARGV[1]`, 0 for none): two operator replicas, or a pass that read an older document,
/// can never overwrite a newer step. Returns `{1, revision}` when written, `{0, revision}` (the
/// stored one) when not.
static WRITE_ROLES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
local revision = 0
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and tonumber(doc.revision) then
    revision = tonumber(doc.revision)
  else
    revision = -1
  end
end
if revision ~= tonumber(ARGV[1]) then
  return {0, revision}
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, revision}
",
    )
});

/// Claims the bot for `ARGV[1]` (`<namespace>/<name>` of a ShardSet) when nobody owns it, it
/// already does, or the owner is `ARGV[2]` (a ShardSet known to be gone; empty: none). Returns
/// the owner after the call.
static CLAIM_BOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local owner = redis.call('GET', KEYS[1])
if (not owner) or owner == ARGV[1] or (ARGV[2] ~= '' and owner == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return owner
",
    )
});

/// Deletes the owner key only if it still names `ARGV[1]`; returns how many keys went.
static RELEASE_BOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Who runs a bot, as [`RedisPool::claim_bot`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotOwner {
    /// The ShardSet that asked.
    Ours,
    /// Another ShardSet (`<namespace>/<name>`).
    Other(String),
}

/// What [`RedisPool::cleanup`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// The bot's keys were deleted: how many.
    Deleted(u64),
    /// Nothing: the bot belongs to another ShardSet (`<namespace>/<name>`), whose keys these are.
    OwnedBy(String),
}

/// What a reshard decision reads from Redis, in one round trip.
#[derive(Debug, Clone)]
pub struct ReshardState {
    /// `P:active-layout`; `Err` text when it could not be parsed.
    pub roles: Result<Option<LayoutRoles>, String>,
    /// Status records of shards `0..total` of each layout asked for.
    pub statuses: BTreeMap<u32, Vec<Option<ShardStatus>>>,
    /// `P:budget`: session starts left as the workers count them.
    pub budget: Option<u32>,
    /// Redis `TIME`, ms.
    pub now_ms: u64,
}

/// What [`RedisPool::reshard_state`] reads, unparsed: roles, budget, `TIME`, status records.
type RawReshardState = (
    Option<String>,
    Option<i64>,
    (u64, u64),
    Vec<Vec<Option<String>>>,
);

/// Connections to the Redis servers of all ShardSets.
#[derive(Default)]
pub struct RedisPool {
    connections: Mutex<HashMap<u64, Slot>>,
}

enum Slot {
    /// The connection, and how many rounds failed in a row before it (0 once one succeeded).
    Ready(RedisLink, u32),
    Failed {
        at: Instant,
        error: RedisError,
        failures: u32,
    },
}

impl RedisPool {
    async fn connection(
        &self,
        target: RedisTarget<'_>,
    ) -> Result<(u64, RedisLink, u32), RedisError> {
        let key = {
            let mut h = DefaultHasher::new();
            target.hash(&mut h);
            h.finish()
        };
        let mut connections = self.connections.lock().await;
        let failures = match connections.get(&key) {
            Some(Slot::Ready(conn, failures)) => return Ok((key, conn.clone(), *failures)),
            Some(Slot::Failed {
                at,
                error,
                failures,
            }) => {
                if at.elapsed() < parked_for(*failures) {
                    return Err(error.clone());
                }
                *failures
            }
            None => 0,
        };
        let error = |reason: String| RedisError {
            url: redact_url(target.url),
            reason,
        };
        // `redis+sentinel://` asks the sentinels for the primary at every reconnect.
        let endpoint = RedisEndpoint::open(target.url, target.password, target.ca)
            .map_err(|e| error(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = endpoint.link(config).map_err(|e| error(e.to_string()))?;
        connections.insert(key, Slot::Ready(conn.clone(), failures));
        Ok((key, conn, failures))
    }

    async fn failed(&self, key: u64, error: &RedisError, failures: u32) {
        self.connections.lock().await.insert(
            key,
            Slot::Failed {
                at: Instant::now(),
                error: error.clone(),
                failures: failures.saturating_add(1),
            },
        );
    }

    /// A round succeeded: the next failure is a first one again.
    async fn succeeded(&self, key: u64) {
        if let Some(Slot::Ready(_, failures)) = self.connections.lock().await.get_mut(&key) {
            *failures = 0;
        }
    }

    /// Runs `op` on the connection for `url`, bounded by [`TIMEOUT`]; a failure parks the
    /// connection (see the module documentation).
    async fn with<T, F, Fut>(&self, target: RedisTarget<'_>, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(RedisLink) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let (key, conn, failures) = self.connection(target).await?;
        let result = match tokio::time::timeout(TIMEOUT, op(conn)).await {
            Ok(Ok(value)) => {
                if failures > 0 {
                    self.succeeded(key).await;
                }
                return Ok(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}s", TIMEOUT.as_secs()),
        };
        let error = RedisError {
            url: redact_url(target.url),
            reason: result,
        };
        self.failed(key, &error, failures).await;
        Err(error)
    }

    /// The status records of shards `0..total` of layout `total`.
    pub async fn shard_statuses(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        total: u32,
    ) -> Result<Vec<Option<ShardStatus>>, RedisError> {
        let keys = Keys::new(app_id);
        let names: Vec<String> = (0..total).map(|shard| keys.status(total, shard)).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = self
            .with(target, |mut conn| async move { conn.mget(names).await })
            .await?;
        Ok(raw
            .into_iter()
            .map(|v| v.and_then(|json| serde_json::from_str(&json).ok()))
            .collect())
    }

    /// The roles document, the budget and the time (one pipeline), then the status records of
    /// every layout in `totals` (one `MGET` each).
    pub async fn reshard_state(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        totals: &[u32],
    ) -> Result<ReshardState, RedisError> {
        let keys = Keys::new(app_id);
        let totals = totals.to_vec();
        let (roles, budget, time, raw): RawReshardState = self
            .with(target, |mut conn| {
                let keys = keys.clone();
                let totals = totals.clone();
                async move {
                    let mut pipe = redis::pipe();
                    pipe.get(keys.active_layout())
                        .get(keys.budget())
                        .cmd("TIME");
                    let mut statuses = Vec::with_capacity(totals.len());
                    for &total in &totals {
                        let names: Vec<String> =
                            (0..total).map(|shard| keys.status(total, shard)).collect();
                        statuses.push(names);
                    }
                    let (roles, budget, time): (Option<String>, Option<i64>, (u64, u64)) =
                        pipe.query_async(&mut conn).await?;
                    let mut raw = Vec::with_capacity(statuses.len());
                    for names in statuses {
                        if names.is_empty() {
                            raw.push(Vec::new());
                            continue;
                        }
                        let values: Vec<Option<String>> = conn.mget(names).await?;
                        raw.push(values);
                    }
                    Ok((roles, budget, time, raw))
                }
            })
            .await?;
        let roles = match roles {
            None => Ok(None),
            Some(json) => serde_json::from_str::<LayoutRoles>(&json)
                .map(Some)
                .map_err(|e| format!("{} is not a roles document: {e}", keys.active_layout())),
        };
        let statuses = totals
            .iter()
            .zip(raw)
            .map(|(&total, values)| {
                let parsed = values
                    .into_iter()
                    .map(|v| v.and_then(|json| serde_json::from_str(&json).ok()))
                    .collect();
                (total, parsed)
            })
            .collect();
        Ok(ReshardState {
            roles,
            statuses,
            budget: budget.and_then(|b| u32::try_from(b.max(0)).ok()),
            now_ms: time.0 * 1000 + time.1 / 1000,
        })
    }

    /// Writes `doc` if the stored document still has revision `expected` (0: none). `Ok(false)`:
    /// someone else wrote first; decide again on what is there now.
    pub async fn write_roles(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        expected: u64,
        doc: &LayoutRoles,
    ) -> Result<bool, RedisError> {
        let key = Keys::new(app_id).active_layout();
        let json = serde_json::to_string(doc).map_err(|e| RedisError {
            url: redact_url(target.url),
            reason: e.to_string(),
        })?;
        let (written, _): (i64, i64) = self
            .with(target, |mut conn| async move {
                WRITE_ROLES
                    .key(key)
                    .arg(expected)
                    .arg(json)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    /// Deletes the bot's fatal markers (`Keys::fatal`, every layout) when `basis` (a digest of
    /// the token and the intents) differs from the one they were kept under, so that shards
    /// Discord refused with the old token or intents try once more with the new ones; then
    /// remembers `basis` (`<prefix>:fatal-basis`). The first basis seen deletes nothing.
    /// Returns how many markers went.
    pub async fn clear_fatal_on_new_basis(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        basis: &str,
    ) -> Result<u64, RedisError> {
        let keys = Keys::new(app_id);
        let basis_key = fatal_basis_key(&keys);
        let pattern = keys.pattern("fatal");
        let basis = basis.to_owned();
        self.with(target, |mut conn| async move {
            let known: Option<String> = conn.get(&basis_key).await?;
            if known.as_deref() == Some(basis.as_str()) {
                return Ok(0);
            }
            let deleted = match known {
                Some(_) => unlink_matching(&mut conn, &pattern, None).await?,
                None => 0,
            };
            let _: () = conn.set(&basis_key, &basis).await?;
            Ok(deleted)
        })
        .await
    }

    /// Claims the bot (`Keys::owner`) for `owner` (`<namespace>/<name>`) unless another ShardSet
    /// holds it; `gone` names a former owner known not to exist any more, which is taken over.
    pub async fn claim_bot(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        owner: &str,
        gone: Option<&str>,
    ) -> Result<BotOwner, RedisError> {
        let key = Keys::new(app_id).owner();
        let (asking, gone) = (owner.to_owned(), gone.unwrap_or_default().to_owned());
        let current: String = self
            .with(target, |mut conn| async move {
                CLAIM_BOT
                    .key(key)
                    .arg(asking)
                    .arg(gone)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(if current == owner {
            BotOwner::Ours
        } else {
            BotOwner::Other(current)
        })
    }

    /// Deletes every key of the bot (`shardset:{<app_id>}:*`) unless another ShardSet than
    /// `owner` owns it: sessions, leases, shard status, gates, queues, budget, active layout, the
    /// epoch marker, and last the claim. The epoch marker goes first: that is what makes deleting
    /// gates safe, since the take-gate script grants nothing for a full window after it finds the
    /// marker missing (`docs/redis-protocol.md`, the epoch), while a gate deleted before it
    /// could be taken at once by a worker still running.
    pub async fn cleanup(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        owner: &str,
    ) -> Result<Cleaned, RedisError> {
        let keys = Keys::new(app_id);
        let pattern = format!("{}:*", keys.prefix());
        let owner = owner.to_owned();
        self.with(target, |mut conn| async move {
            let owner_key = keys.owner();
            let current: Option<String> = conn.get(&owner_key).await?;
            if let Some(other) = current.filter(|c| *c != owner) {
                return Ok(Cleaned::OwnedBy(other));
            }
            let epoch: u64 = conn.unlink(keys.epoch()).await?;
            let rest = unlink_matching(&mut conn, &pattern, Some(&owner_key)).await?;
            let claim: u64 = RELEASE_BOT
                .key(&owner_key)
                .arg(&owner)
                .invoke_async(&mut conn)
                .await?;
            // The bot's old pods may have identified moments ago: a ShardSet of it created
            // again soon keeps the epoch hold (`fresh.rs`).
            let _: () = conn
                .pset_ex(keys.cleaned(), &owner, shardset_contract::CLEANED_TTL_MS)
                .await?;
            Ok(Cleaned::Deleted(epoch + rest + claim))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardset_contract::{SILENT_REASON, ShardState};

    #[test]
    fn a_failing_redis_is_left_alone_longer_each_time() {
        let secs: Vec<u64> = (1..=7).map(|f| parked_for(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 20, 20]);
        assert_eq!(parked_for(u32::MAX), RETRY_AFTER_FAILURE);
    }

    fn record(state: ShardState, guilds: u32) -> Option<ShardStatus> {
        Some(ShardStatus {
            state,
            guilds,
            pod: "bot-4-0-1".into(),
            reason: (state == ShardState::Fatal).then(|| "4014 disallowed intents".into()),
            updated_at_ms: 1,
            layout_revision: 0,
            lapses: 0,
            behind_ms: None,
            bus_accepting: None,
        })
    }

    #[test]
    fn sums_guilds_and_lists_failed_shards() {
        let s = summarize(&[
            record(ShardState::Ready, 10),
            None,
            record(ShardState::Fatal, 0),
            record(ShardState::Ready, 5),
        ]);
        assert_eq!(s.guilds, Some(15));
        assert_eq!(
            s.failed,
            vec![(
                2,
                "bot-4-0-1".to_string(),
                "4014 disallowed intents".to_string()
            )]
        );
        assert_eq!(summarize(&[None, None]).guilds, None);
        assert!(s.healing.is_empty());
    }

    #[test]
    fn lists_shards_healing_a_silent_connection() {
        let silent = |state| {
            record(state, 3).map(|r| ShardStatus {
                reason: Some(format!("{SILENT_REASON}: 1 heartbeats in a row got no ACK")),
                ..r
            })
        };
        let s = summarize(&[
            silent(ShardState::Resuming),
            record(ShardState::Resuming, 3),
            silent(ShardState::Reconnecting),
            // Live again: the reason no longer counts (the worker clears it anyway).
            silent(ShardState::Ready),
        ]);
        assert_eq!(
            s.healing,
            vec![(0, "bot-4-0-1".to_string()), (2, "bot-4-0-1".to_string())]
        );
    }

    #[test]
    fn counts_the_shards_whose_pod_cannot_publish() {
        let bus = |accepting| {
            record(ShardState::Ready, 1).map(|r| ShardStatus {
                bus_accepting: accepting,
                ..r
            })
        };
        let s = summarize(&[bus(Some(true)), bus(Some(false)), bus(None), None]);
        assert_eq!(
            s.bus.reporting, 2,
            "records without busAccepting do not count"
        );
        assert_eq!(s.bus.unreachable, vec![(1, "bot-4-0-1".to_string())]);
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("redis://:hunter2@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(redact_url("redis://redis:6379"), "redis://redis:6379");
    }
}
