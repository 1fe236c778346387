//! Recording into the logs the control API reports: every Identify as it arrived, every breach
//! of a rule, every command of an authenticated client and every late heartbeat, each capped at
//! `LOG_CAPACITY` records (later ones are counted, not stored). An [`Origin`] says which
//! connection (and session or shard) a violation came from.

use std::sync::atomic::AtomicU64;

use super::{Fake, add, lock};
use crate::control::{
    CommandRecord, IdentifyOutcome, IdentifyRecord, LateHeartbeat, Rule, Violation,
};
use crate::rules::{self, Breach, Micros, US_PER_MS};
use crate::session::Session;

/// Most records kept per log; later ones are counted, not stored.
const LOG_CAPACITY: usize = 100_000;

/// Counts a record in `counter` and keeps it in `log` while the log has room.
fn append<T>(counter: &AtomicU64, log: &mut Vec<T>, record: T) {
    add(counter, 1);
    if log.len() < LOG_CAPACITY {
        log.push(record);
    }
}

/// Who a connection is, for violation records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub connection: u64,
    pub session: Option<&'a Session>,
    pub shard: Option<[u32; 2]>,
}

impl Fake {
    /// Records a breach.
    pub fn violation(&self, rule: Rule, origin: Origin<'_>, details: impl Into<String>) {
        let details = details.into();
        let shard = origin
            .session
            .map(|s| [s.shard, s.num_shards])
            .or(origin.shard);
        tracing::warn!(
            rule = ?rule,
            connection = origin.connection,
            shard_id = shard.map(|s| s[0]),
            shard_total = shard.map(|s| s[1]),
            "violation: {details}"
        );
        let record = Violation {
            rule,
            at_ms: self.clock.now_ms(),
            shard: shard.map(|s| s[0]),
            num_shards: shard.map(|s| s[1]),
            session_id: origin.session.map(|s| s.id.clone()),
            connection: origin.connection,
            details,
        };
        append(
            &self.stats.violations,
            &mut lock(&self.logs).violations,
            record,
        );
    }

    /// Records a command an authenticated client sent.
    pub fn record_command(&self, record: CommandRecord) {
        append(&self.stats.commands, &mut lock(&self.logs).commands, record);
    }

    /// Records a late heartbeat.
    pub fn record_late_heartbeat(&self, record: LateHeartbeat) {
        append(
            &self.stats.heartbeats_late,
            &mut lock(&self.logs).late_heartbeats,
            record,
        );
    }

    pub(super) fn breach(&self, breach: &Breach, origin: Origin<'_>) {
        self.violation(breach.rule, origin, breach.details.clone());
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn log_identify(
        &self,
        at: Micros,
        shard: [u32; 2],
        outcome: IdentifyOutcome,
        close_code: Option<u16>,
        session_id: Option<String>,
        connection: u64,
    ) {
        let lag_us = self.clock.now_us().saturating_sub(at);
        self.stats
            .identify_lag_max_us
            .fetch_max(lag_us, std::sync::atomic::Ordering::Relaxed);
        let record = IdentifyRecord {
            at_ms: at / US_PER_MS,
            at_us: at,
            lag_us,
            shard: shard[0],
            num_shards: shard[1],
            bucket: rules::bucket(shard[0], self.config.max_concurrency),
            outcome,
            close_code,
            session_id,
            connection,
        };
        append(
            &self.stats.identifies,
            &mut lock(&self.logs).identifies,
            record,
        );
    }
}
