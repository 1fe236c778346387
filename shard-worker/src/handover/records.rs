//! The records of a reshard in Redis (`docs/resharding.md`): the layouts' roles the operator
//! writes (`P:active-layout`) and the event claims a `claiming` layout takes (`P:claim:<key>`).

use std::time::Duration;

use redis::AsyncCommands;

use crate::shard::records::{RecordError, parse_json};
use shardset_contract::redis_link::RedisLink;
use shardset_contract::{Keys, LayoutRoles};

/// The reshard records of one bot (every layout shares them).
#[derive(Clone)]
pub struct HandoverRecords {
    conn: RedisLink,
    keys: Keys,
}

impl std::fmt::Debug for HandoverRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoverRecords")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl HandoverRecords {
    pub fn new(conn: RedisLink, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// The roles of the layouts (`P:active-layout`), if the operator set them.
    pub async fn layout_roles(&self) -> Result<Option<LayoutRoles>, RecordError> {
        let key = self.keys.active_layout();
        let json: Option<String> = self.conn.clone().get(&key).await?;
        parse_json(key, json)
    }

    /// Claims one event for `layout`: `SET P:claim:<key> <layout> NX PX <ttl>`. True when this
    /// call took it (nobody had).
    pub async fn claim(
        &self,
        event_key: &str,
        layout: &str,
        ttl: Duration,
    ) -> Result<bool, RecordError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.claim(event_key))
            .arg(layout)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Whether `layout` holds the claim of one event (it acted on it, or claimed it for the bus).
    pub async fn holds(&self, event_key: &str, layout: &str) -> Result<bool, RecordError> {
        let holder: Option<String> = self.conn.clone().get(self.keys.claim(event_key)).await?;
        Ok(holder.as_deref() == Some(layout))
    }

    /// Claims one event for `layout` like [`HandoverRecords::claim`], or finds it already
    /// claimed by `layout` itself: true in both cases. A layout that replays an event after a
    /// crash (its successor resuming from a checkpoint) publishes it again, with the same
    /// content id, which the bus drops as a duplicate; without this it would find its own claim
    /// and withhold the event, which may never have reached the bus.
    pub async fn claim_or_own(
        &self,
        event_key: &str,
        layout: &str,
        ttl: Duration,
    ) -> Result<bool, RecordError> {
        loop {
            if self.claim(event_key, layout, ttl).await? {
                return Ok(true);
            }
            let holder: Option<String> = self.conn.clone().get(self.keys.claim(event_key)).await?;
            match holder {
                Some(holder) => return Ok(holder == layout),
                // Expired between the two calls: claim again.
                None => continue,
            }
        }
    }

    /// Claims every event of `event_keys` for `layout` in one round trip (the back-fill of a
    /// layout going from `active` to `claiming`: it acted on them, so they are its own).
    pub async fn claim_all(
        &self,
        event_keys: &[String],
        layout: &str,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        for chunk in event_keys.chunks(1_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("SET")
                    .arg(self.keys.claim(key))
                    .arg(layout)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .ignore();
            }
            let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }
}
