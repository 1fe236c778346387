//! A replica's records in the ownership bucket (`docs/bus-protocol.md`, "Partition ownership"):
//! its member key (heartbeat), and the lease of each partition it consumes, created only when
//! absent and renewed or released only at the revision it last wrote (compare-and-set). Expiry
//! is the bucket's `max_age`: what is not rewritten within the TTL disappears.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::TryStreamExt;
use shardset_contract::bus::{self, Partition};

/// A KV call failed (NATS down, timeout): nothing is known about the key. `label` is fixed.
#[derive(Debug, thiserror::Error)]
#[error("ownership bucket {what} failed: {reason}")]
pub(crate) struct LeaseError {
    pub what: &'static str,
    reason: String,
}

impl LeaseError {
    fn new(what: &'static str, error: impl std::fmt::Display) -> Self {
        Self {
            what,
            reason: error.to_string(),
        }
    }
}

/// One replica's view of the bucket.
pub(crate) struct Leases {
    kv: kv::Store,
    group: String,
    replica: String,
    member_value: Bytes,
    owner_value: Bytes,
}

impl Leases {
    pub fn new(kv: kv::Store, group: &str, replica: &str) -> Self {
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let member_value = serde_json::json!({
            "replica": replica,
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "startedMs": started_ms,
        });
        Self {
            kv,
            group: group.to_owned(),
            replica: replica.to_owned(),
            member_value: member_value.to_string().into(),
            owner_value: serde_json::json!({ "replica": replica }).to_string().into(),
        }
    }

    pub fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// Writes this replica's member key (again): alive for one more TTL.
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        self.kv
            .put(
                bus::member_key(&self.group, &self.replica),
                self.member_value.clone(),
            )
            .await
            .map(drop)
            .map_err(|e| LeaseError::new("member heartbeat", e))
    }

    /// Removes this replica's member key: the others reassign its partitions now.
    pub async fn leave(&self) -> Result<(), LeaseError> {
        self.kv
            .delete(bus::member_key(&self.group, &self.replica))
            .await
            .map_err(|e| LeaseError::new("member delete", e))
    }

    /// The group's live members (their member keys exist).
    pub async fn members(&self) -> Result<Vec<String>, LeaseError> {
        let prefix = bus::member_prefix(&self.group);
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| LeaseError::new("listing members", e))?
            .try_collect()
            .await
            .map_err(|e| LeaseError::new("listing members", e))?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    /// Takes the lease of `partition` if nobody holds it: its revision, or `None` when held.
    pub async fn acquire(&self, partition: Partition) -> Result<Option<u64>, LeaseError> {
        match self
            .kv
            .create(
                bus::owner_key(&self.group, partition),
                self.owner_value.clone(),
            )
            .await
        {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(LeaseError::new("lease create", e)),
        }
    }

    /// Renews the lease held at `revision`: the new revision, or `None` when it was lost (it
    /// expired, or someone else holds it now).
    pub async fn renew(
        &self,
        partition: Partition,
        revision: u64,
    ) -> Result<Option<u64>, LeaseError> {
        match self
            .kv
            .update(
                bus::owner_key(&self.group, partition),
                self.owner_value.clone(),
                revision,
            )
            .await
        {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(LeaseError::new("lease renew", e)),
        }
    }

    /// Releases the lease held at `revision` (a no-op if it was lost meanwhile).
    pub async fn release(&self, partition: Partition, revision: u64) -> Result<(), LeaseError> {
        match self
            .kv
            .delete_expect_revision(bus::owner_key(&self.group, partition), Some(revision))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(LeaseError::new("lease release", e)),
        }
    }
}
