//! Every session the fake started, kept after it ended (how far it was written to a socket, how
//! it ended), and the check that a shard never has two live sessions: when a session attaches to
//! a connection (Identify accepted, Resume), no other session of the same shard (same
//! `num_shards`) may be attached to one. A bot that lets that happen receives the shard's events
//! twice; Discord does not refuse it, so the fake records it (`/control/overlaps`) for tests to
//! assert on.

use std::sync::Arc;

use super::{Fake, add, lock};
use crate::control::{SessionHistory, SessionOverlap};
use crate::session::{Link, Session};

/// Most sessions kept in the history; later ones are counted, not stored.
const HISTORY_CAPACITY: usize = 100_000;

impl Fake {
    /// Keeps a session that just started in the history.
    pub(super) fn record_session(&self, session: &Arc<Session>) {
        add(&self.stats.sessions_started, 1);
        let mut logs = lock(&self.logs);
        if logs.sessions.len() < HISTORY_CAPACITY {
            logs.sessions.push(Arc::clone(session));
        }
    }

    /// `session` is attaching to `connection`: records an overlap for every other session of its
    /// shard attached to a connection now.
    pub(super) fn check_overlap(&self, session: &Session, connection: u64) {
        let live: Vec<(String, u64)> = self
            .sessions_read()
            .routes
            .get(&session.num_shards)
            .and_then(|layout| layout.get(&session.shard))
            .into_iter()
            .flatten()
            .filter(|other| other.id != session.id)
            .filter_map(|other| match other.state().link {
                Link::Attached(c) if c != connection => Some((other.id.clone(), c)),
                _ => None,
            })
            .collect();
        for (live_session_id, live_connection) in live {
            tracing::warn!(
                shard_id = session.shard,
                shard_total = session.num_shards,
                session = %session.id,
                live_session = %live_session_id,
                "two live sessions for one shard"
            );
            add(&self.stats.session_overlaps, 1);
            let record = SessionOverlap {
                at_ms: self.clock.now_ms(),
                shard: session.shard,
                num_shards: session.num_shards,
                session_id: session.id.clone(),
                connection,
                live_session_id,
                live_connection,
            };
            let mut logs = lock(&self.logs);
            if logs.overlaps.len() < HISTORY_CAPACITY {
                logs.overlaps.push(record);
            }
        }
    }

    /// Every session started since start (or the last reset), in order.
    pub fn session_history(&self) -> Vec<SessionHistory> {
        let sessions = lock(&self.logs).sessions.clone();
        sessions
            .iter()
            .map(|s| {
                let state = s.state();
                SessionHistory {
                    session_id: s.id.clone(),
                    shard: s.shard,
                    num_shards: s.num_shards,
                    created_at_ms: s.created_at_ms,
                    written_seq: state.written_seq,
                    resumes: state.resumes,
                    ended: state.end,
                }
            })
            .collect()
    }

    /// Every time a session attached while another of its shard was live.
    pub fn overlaps(&self) -> Vec<SessionOverlap> {
        lock(&self.logs).overlaps.clone()
    }
}
