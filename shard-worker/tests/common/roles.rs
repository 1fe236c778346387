//! The operator's part in the hand-over protocol (`docs/resharding.md`), played by a test: it
//! writes the layout roles document (`P:active-layout`) and waits for the shards'
//! acknowledgements in their status records.

use std::time::Duration;

use redis::Commands;
use shardset_contract::{Keys, LayoutRoles, Role, ShardStatus};

use super::scenario::Scenario;

/// How long the shards of a layout may take to acknowledge a revision.
pub const ACKS: Duration = Duration::from_secs(10);

/// The operator's side: writes the roles document and waits for acknowledgements.
pub struct Roles {
    pub conn: redis::Connection,
    pub keys: Keys,
    revision: u64,
}

impl Roles {
    pub fn new(s: &Scenario) -> Self {
        Self {
            conn: s.redis.conn(),
            keys: Keys::new(s.fake.state().config.application_id),
            revision: 0,
        }
    }

    pub fn write(&mut self, roles: &[(u32, Role)]) -> u64 {
        self.revision += 1;
        let doc = LayoutRoles {
            revision: self.revision,
            roles: roles.iter().map(|(l, r)| (l.to_string(), *r)).collect(),
            ..LayoutRoles::default()
        };
        let json = serde_json::to_string(&doc).expect("json");
        let _: () = self
            .conn
            .set(self.keys.active_layout(), json)
            .expect("write roles");
        self.revision
    }

    pub fn status(&mut self, total: u32, shard: u32) -> Option<ShardStatus> {
        let json: Option<String> = self
            .conn
            .get(self.keys.status(total, shard))
            .expect("read status");
        json.and_then(|j| serde_json::from_str(&j).ok())
    }

    /// Waits until every shard of layout `total` acknowledged the current revision.
    pub async fn acked(&mut self, total: u32) -> bool {
        let revision = self.revision;
        let deadline = tokio::time::Instant::now() + ACKS;
        while tokio::time::Instant::now() < deadline {
            if (0..total).all(|shard| {
                self.status(total, shard)
                    .is_some_and(|s| s.layout_revision >= revision)
            }) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}
