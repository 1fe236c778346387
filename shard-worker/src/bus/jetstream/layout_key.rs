//! The `layout` key of the handlers' bucket (`docs/bus-protocol.md`, "Partition ownership"):
//! `{"total": N}`, the shard count of the acting layout, which handlers read to address a
//! guild's commands when they have no event in hand. The bucket's keys expire after the lease
//! TTL (its `max_age`), so every worker of the `active` layout rewrites it every third of that;
//! any one of them suffices, and the key disappears when no layout acts.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use shardset_contract::Role;
use shardset_contract::bus::LAYOUT_KEY;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::handover::acting::Acting;

/// The key's value for a layout of `total` shards.
pub fn value(total: u32) -> String {
    format!(r#"{{"total":{total}}}"#)
}

/// Keeps the `layout` key while this worker's layout is `active`.
pub struct Keeper {
    pub js: jetstream::Context,
    pub bucket_name: String,
    /// Bound at startup; else bound when it appears (someone else manages the bus).
    pub bucket: Option<kv::Store>,
    pub total: u32,
    pub acting: Arc<Acting>,
}

impl Keeper {
    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // A third of the bucket's TTL, read once it is bound.
        let mut period = None;
        let mut complained = false;
        loop {
            if self.bucket.is_none() {
                self.bucket = self.js.get_key_value(&self.bucket_name).await.ok();
            }
            if let Some(bucket) = &self.bucket {
                if period.is_none() {
                    period = ttl_third(bucket).await;
                }
                if self.acting.role() == Some(Role::Active) {
                    match bucket.put(LAYOUT_KEY, value(self.total).into()).await {
                        Ok(_) => {
                            if complained {
                                info!(total = self.total, "the bus's layout key is written again");
                            }
                            complained = false;
                        }
                        Err(e) => {
                            if !complained {
                                info!(error = %e, "cannot write the bus's layout key; trying again");
                            }
                            complained = true;
                        }
                    }
                }
            } else {
                debug!(bucket = %self.bucket_name, "the handlers' bucket does not exist yet");
            }
            tokio::select! {
                () = tokio::time::sleep(period.unwrap_or(Duration::from_secs(1))) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// A third of the bucket's `max_age` (the lease TTL).
async fn ttl_third(bucket: &kv::Store) -> Option<Duration> {
    let status = bucket.status().await.ok()?;
    let ttl = status.max_age();
    (!ttl.is_zero()).then(|| ttl / 3)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_value_handlers_read() {
        assert_eq!(super::value(24), r#"{"total":24}"#);
    }
}
