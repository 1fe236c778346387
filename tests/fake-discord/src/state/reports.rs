//! What the control API reports: the logs, the sessions, the synthetic load and the counters.

use super::{Fake, get, lock};
use crate::control::{
    CommandRecord, Counters, IdentifyRecord, LateHeartbeat, LoadStatus, RecordFilter, SessionInfo,
    Violation,
};
use crate::rules::US_PER_MS;
use crate::session::Link;

impl Fake {
    pub fn identifies(&self) -> Vec<IdentifyRecord> {
        lock(&self.logs).identifies.clone()
    }

    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.logs).violations.clone()
    }

    /// The commands `filter` selects, in arrival order.
    pub fn commands(&self, filter: &RecordFilter) -> Vec<CommandRecord> {
        lock(&self.logs)
            .commands
            .iter()
            .filter(|c| {
                filter.matches(
                    Some(&c.session_id),
                    Some([c.shard, c.num_shards]),
                    Some(c.op),
                )
            })
            .cloned()
            .collect()
    }

    /// The late heartbeats `filter` selects, in arrival order.
    pub fn late_heartbeats(&self, filter: &RecordFilter) -> Vec<LateHeartbeat> {
        lock(&self.logs)
            .late_heartbeats
            .iter()
            .filter(|h| {
                let shard = h.shard.zip(h.num_shards).map(|(s, n)| [s, n]);
                filter.matches(h.session_id.as_deref(), shard, None)
            })
            .cloned()
            .collect()
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let window = self.config.resume_window_ms;
        let mut list: Vec<SessionInfo> = self
            .sessions_read()
            .by_id
            .values()
            .map(|s| {
                let state = s.state();
                let (connected, connection, resumable_until_ms) = match state.link {
                    Link::Attached(c) => (true, Some(c), None),
                    Link::Detached(at) => (false, None, Some(at / US_PER_MS + window)),
                    Link::Ended => (false, None, None),
                };
                SessionInfo {
                    session_id: s.id.clone(),
                    shard: s.shard,
                    num_shards: s.num_shards,
                    bucket: s.bucket,
                    intents: s.intents,
                    seq: state.seq,
                    sent_seq: state.sent_seq,
                    ready: state.ready_sent,
                    connected,
                    connection,
                    resumable_until_ms,
                    guilds: s.guilds,
                    resumes: state.resumes,
                    buffered: state.buffer.len(),
                    created_at_ms: s.created_at_ms,
                }
            })
            .collect();
        list.sort_by(|a, b| {
            (a.num_shards, a.shard, a.created_at_ms).cmp(&(b.num_shards, b.shard, b.created_at_ms))
        });
        list
    }

    pub fn load_status(&self) -> LoadStatus {
        let settings = *self.load.borrow();
        LoadStatus {
            running: settings.rate > 0,
            settings,
            generated: get(&self.load_generated),
        }
    }

    pub fn counters(&self) -> Counters {
        let s = &self.stats;
        Counters {
            connections_open: get(&s.connections_open),
            connections_total: get(&s.connections_total),
            identifies: get(&s.identifies),
            identifies_accepted: get(&s.identifies_accepted),
            resumes: get(&s.resumes),
            resumes_failed: get(&s.resumes_failed),
            heartbeats: get(&s.heartbeats),
            dispatches_sent: get(&s.dispatches_sent),
            payload_bytes_sent: get(&s.payload_bytes_sent),
            wire_bytes_sent: get(&s.wire_bytes_sent),
            events_generated: get(&s.events_generated),
            overflows: get(&s.overflows),
            violations: get(&s.violations),
            identify_lag_max_us: get(&s.identify_lag_max_us),
            commands: get(&s.commands),
            heartbeats_late: get(&s.heartbeats_late),
            session_overlaps: get(&s.session_overlaps),
            sessions: self.sessions_read().by_id.len() as u64,
            token_reset: self.token_reset(),
            budget: Some(self.budget()),
        }
    }
}
