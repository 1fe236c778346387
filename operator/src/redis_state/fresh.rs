//! A fresh bot's epoch, settled before its first pods (issue 16): when the bot has no key at all
//! in this Redis but the owner claim this ShardSet just made, the operator writes the epoch
//! marker already "held out" (`<run_id>:0`), so the first Identifies do not wait the first-use
//! hold. Redis alone can only say the keys are missing, not whether they were never written or
//! were lost: the caller must know that no worker of the bot can have run within the hold
//! (`docs/redis-protocol.md`, "A fresh bot"); this file only checks Redis's side.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};
use shardset_contract::Keys;

use super::{RedisError, RedisPool, RedisTarget, fatal_basis_key};

/// Writes the epoch marker as a long-established one (`<run_id>:0`) only while none exists, no
/// cleanup of the bot is recent (`KEYS[3]`) and the bot's owner is `ARGV[1]`; returns 1 when
/// written. A worker grants a gate only after it
/// found (or wrote) a marker, so a marker missing here means no gate was granted since the bot's
/// keys were last lost or deleted.
static SETTLE_FRESH_EPOCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1
  or redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
redis.call('SET', KEYS[1], run_id .. ':0')
return 1
",
    )
});

/// What [`RedisPool::settle_fresh_epoch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreshEpoch {
    /// The marker was written held out: the first Identify goes at once.
    Settled,
    /// A key of the bot exists (named): the workers keep the hold.
    KeyFound(String),
    /// The marker appeared meanwhile, or the claim is not this ShardSet's: the hold stays.
    NotSettled,
}

impl RedisPool {
    /// Settles the epoch of bot `app_id` for its owner `owner` when the bot has no key in Redis
    /// but the operator's own (the claim, the fatal markers' basis, the layout roles): SCAN of
    /// `P:*`, then the script re-checks the marker and the owner atomically. The caller vouches that no worker of the bot ran within the hold.
    pub async fn settle_fresh_epoch(
        &self,
        target: RedisTarget<'_>,
        app_id: u64,
        owner: &str,
    ) -> Result<FreshEpoch, RedisError> {
        let keys = Keys::new(app_id);
        let owner = owner.to_owned();
        self.with(target, |mut conn| async move {
            let owner_key = keys.owner();
            // The operator's own keys (written by this pass before the pods) say nothing of
            // workers.
            let operators = [
                owner_key.clone(),
                fatal_basis_key(&keys),
                keys.active_layout(),
            ];
            // A cleanup of the bot moments ago: its old pods may have identified within the
            // window (its tombstone lies outside the pattern below).
            let cleaned = keys.cleaned();
            if conn.exists(&cleaned).await? {
                return Ok(FreshEpoch::KeyFound(cleaned));
            }
            let pattern = format!("{}:*", keys.prefix());
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                if let Some(found) = batch.into_iter().find(|k| !operators.contains(k)) {
                    return Ok(FreshEpoch::KeyFound(found));
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let written: i64 = SETTLE_FRESH_EPOCH
                .key(keys.epoch())
                .key(&owner_key)
                .key(&cleaned)
                .arg(&owner)
                .invoke_async(&mut conn)
                .await?;
            Ok(if written == 1 {
                FreshEpoch::Settled
            } else {
                FreshEpoch::NotSettled
            })
        })
        .await
    }
}
