//! The session registry: every session by id, and the routing index by `(num_shards, shard_id)`
//! that events are routed through (`events.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::session::Session;

/// Every live or resumable session, by id and by route.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    pub(super) by_id: HashMap<String, Arc<Session>>,
    /// num_shards → shard_id → sessions.
    pub(super) routes: BTreeMap<u32, HashMap<u32, Vec<Arc<Session>>>>,
}

impl Sessions {
    pub(super) fn insert(&mut self, session: Arc<Session>) {
        self.routes
            .entry(session.num_shards)
            .or_default()
            .entry(session.shard)
            .or_default()
            .push(Arc::clone(&session));
        self.by_id.insert(session.id.clone(), session);
    }

    pub(super) fn remove(&mut self, session: &Session) -> bool {
        if self.by_id.remove(&session.id).is_none() {
            return false;
        }
        if let Some(layout) = self.routes.get_mut(&session.num_shards) {
            if let Some(list) = layout.get_mut(&session.shard) {
                list.retain(|s| s.id != session.id);
                if list.is_empty() {
                    layout.remove(&session.shard);
                }
            }
            if layout.is_empty() {
                self.routes.remove(&session.num_shards);
            }
        }
        true
    }
}
