//! The per-shard records of the protocol besides the Identify gate (`docs/redis-protocol.md`):
//! the shard lease (one live session per shard across pods), the saved session (custody and
//! crash recovery), the status record (read by the operator), the fatal marker and the Identify
//! streak (the Identify-loop guard's count, kept across restarts). The lease
//! scripts live beside this file. (The records of a reshard are in [`crate::handover::records`].)

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use shardset_contract::redis_link::RedisLink;
use shardset_contract::{FatalMarker, Keys, SessionRecord, ShardStatus};

static CLAIM_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("claim_lease.lua")));
static RELEASE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release_lease.lua")));
static SAVE_SESSION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("save_session.lua")));

/// How long a saved session is kept: the resume window after the lease would expire. While a
/// pod holds the lease its session is live (a holder that cannot renew closes it before the lease
/// expires: self-fencing), so it ends at the latest when the lease does, and Discord keeps it
/// resumable for the resume window after that. Every save and every lease renewal writes this
/// TTL, so a quiet shard (no dispatch, no new checkpoint) keeps its record too.
pub fn session_record_ttl(lease_ttl: Duration, resume_window: Duration) -> Duration {
    lease_ttl + resume_window
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("malformed record under {key}: {source}")]
    Malformed {
        key: String,
        source: serde_json::Error,
    },
}

impl RecordError {
    /// A fixed label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// The record `json` read from `key`, if there was one.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    key: String,
    json: Option<String>,
) -> Result<Option<T>, RecordError> {
    json.map(|j| serde_json::from_str(&j).map_err(|source| RecordError::Malformed { key, source }))
        .transpose()
}

/// `value` as the JSON stored under `key`.
fn to_json<T: serde::Serialize>(key: &str, value: &T) -> Result<String, RecordError> {
    serde_json::to_string(value).map_err(|source| RecordError::Malformed {
        key: key.to_owned(),
        source,
    })
}

/// The answer to a lease claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Ours (taken or renewed).
    Held,
    /// Another owner holds it for this long.
    Taken { pttl: Duration },
}

/// Records of one layout (`total`) of one bot.
#[derive(Clone)]
pub struct Records {
    conn: RedisLink,
    keys: Keys,
    total: u32,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("keys", &self.keys)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Records {
    pub fn new(conn: RedisLink, keys: Keys, total: u32) -> Self {
        Self { conn, keys, total }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Takes or renews the lease of `shard` for `owner` for `ttl`; when granted, the shard's
    /// saved session (if any) is kept for `record_ttl` from now ([`session_record_ttl`]).
    pub async fn claim_lease(
        &self,
        shard: u32,
        owner: &str,
        ttl: Duration,
        record_ttl: Duration,
    ) -> Result<Lease, RecordError> {
        let (held, pttl): (i64, i64) = CLAIM_LEASE
            .key(self.keys.lease(self.total, shard))
            .key(self.keys.session(self.total, shard))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .arg(record_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if held == 1 {
            Lease::Held
        } else {
            Lease::Taken {
                pttl: Duration::from_millis(pttl.max(0) as u64),
            }
        })
    }

    /// Gives the lease of `shard` up if `owner` still holds it.
    pub async fn release_lease(&self, shard: u32, owner: &str) -> Result<bool, RecordError> {
        let deleted: i64 = RELEASE_LEASE
            .key(self.keys.lease(self.total, shard))
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(deleted == 1)
    }

    /// Saves the session of `shard` for the next owner, for `ttl` ([`session_record_ttl`]), if
    /// `owner` holds the shard's lease (or nobody does). False: another owner holds it, and the
    /// record (its own, newer) was left alone.
    pub async fn save_session(
        &self,
        shard: u32,
        owner: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<bool, RecordError> {
        let key = self.keys.session(self.total, shard);
        let json = serde_json::to_string(record).map_err(|source| RecordError::Malformed {
            key: key.clone(),
            source,
        })?;
        let written: i64 = SAVE_SESSION
            .key(self.keys.lease(self.total, shard))
            .key(key)
            .arg(owner)
            .arg(json)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(written == 1)
    }

    /// `SET key <value as JSON> PX ttl`.
    async fn put_json<T: serde::Serialize>(
        &self,
        key: String,
        value: &T,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        let json = to_json(&key, value)?;
        let _: () = self
            .conn
            .clone()
            .pset_ex(key, json, ttl.as_millis() as u64)
            .await?;
        Ok(())
    }

    /// `DEL key`.
    async fn delete(&self, key: String) -> Result<(), RecordError> {
        let _: () = self.conn.clone().del(key).await?;
        Ok(())
    }

    /// The saved session of `shard`, if any.
    pub async fn load_session(&self, shard: u32) -> Result<Option<SessionRecord>, RecordError> {
        let key = self.keys.session(self.total, shard);
        let json: Option<String> = self.conn.clone().get(&key).await?;
        parse_json(key, json)
    }

    /// Forgets the saved session of `shard` (it can no longer be resumed).
    pub async fn delete_session(&self, shard: u32) -> Result<(), RecordError> {
        self.delete(self.keys.session(self.total, shard)).await
    }

    /// Writes the status record of `shard`, kept for `ttl`.
    pub async fn write_status(
        &self,
        shard: u32,
        status: &ShardStatus,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        self.put_json(self.keys.status(self.total, shard), status, ttl)
            .await
    }

    /// Deletes the status record of `shard` (a retired layout leaves nothing behind).
    pub async fn delete_status(&self, shard: u32) -> Result<(), RecordError> {
        self.delete(self.keys.status(self.total, shard)).await
    }

    /// Marks `shard` closed for good (`Keys::fatal`) for `ttl`: no pod identifies it meanwhile.
    /// The marker takes over from the Identify streak, which goes in the same step: once the
    /// marker is deleted (the cause fixed) the shard starts a new count.
    pub async fn mark_fatal(
        &self,
        shard: u32,
        marker: &FatalMarker,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        let key = self.keys.fatal(self.total, shard);
        let json = to_json(&key, marker)?;
        let _: () = redis::pipe()
            .atomic()
            .pset_ex(key, json, ttl.as_millis() as u64)
            .ignore()
            .del(self.keys.identify_streak(self.total, shard))
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// How many Identifies of `shard` in a row led to no lasting session, across processes
    /// (`Keys::identify_streak`; 0 when none is recorded).
    pub async fn identify_streak(&self, shard: u32) -> Result<u32, RecordError> {
        let key = self.keys.identify_streak(self.total, shard);
        let value: Option<String> = self.conn.clone().get(&key).await?;
        Ok(parse_json(key, value)?.unwrap_or(0))
    }

    /// Records `streak` Identifies of `shard` in a row without a lasting session, for `ttl`.
    pub async fn record_identify_streak(
        &self,
        shard: u32,
        streak: u32,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        self.put_json(self.keys.identify_streak(self.total, shard), &streak, ttl)
            .await
    }

    /// A session of `shard` lasted: its Identify streak starts over.
    pub async fn clear_identify_streak(&self, shard: u32) -> Result<(), RecordError> {
        self.delete(self.keys.identify_streak(self.total, shard))
            .await
    }

    /// The marker of `shard` if it was closed for good (and the marker has not expired).
    pub async fn fatal(&self, shard: u32) -> Result<Option<FatalMarker>, RecordError> {
        let value: Option<String> = self
            .conn
            .clone()
            .get(self.keys.fatal(self.total, shard))
            .await?;
        Ok(value.as_deref().map(FatalMarker::parse))
    }
}
