//! The pure parts beside the Redis I/O: the shard records summed for the status, and a Redis URL
//! fit to show (without its password).

use shardset_contract::redis_link::SentinelUrl;
use shardset_contract::{ShardState, ShardStatus};

use crate::status::BusReport;

/// What the shard records say, for the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSummary {
    /// Sum of guilds over the shards that reported; `None` when none did.
    pub guilds: Option<u64>,
    /// Shards closed for good: `(shard, pod, reason)`.
    pub failed: Vec<(u32, String, String)>,
    /// Shards whose connection fell silent and that are resuming on a new one: `(shard, pod)`.
    pub healing: Vec<(u32, String)>,
    /// What the records with `busAccepting` say (workers with a bus).
    pub bus: BusReport,
}

/// Sums the records of one layout.
pub fn summarize(records: &[Option<ShardStatus>]) -> ShardSummary {
    let mut summary = ShardSummary::default();
    for (shard, record) in records.iter().enumerate() {
        let Some(record) = record else { continue };
        *summary.guilds.get_or_insert(0) += u64::from(record.guilds);
        if record.healing_silence() {
            summary.healing.push((shard as u32, record.pod.clone()));
        }
        if let Some(accepting) = record.bus_accepting {
            summary.bus.reporting += 1;
            if !accepting {
                summary
                    .bus
                    .unreachable
                    .push((shard as u32, record.pod.clone()));
            }
        }
        if record.state == ShardState::Fatal {
            summary.failed.push((
                shard as u32,
                record.pod.clone(),
                record
                    .reason
                    .clone()
                    .unwrap_or_else(|| "closed for good".into()),
            ));
        }
    }
    summary
}

/// The URL without a password (`redis://:secret@host` → `redis://:***@host`; a sentinel URL's
/// daemons' password too).
pub fn redact_url(url: &str) -> String {
    if let Some(sentinel) = SentinelUrl::parse(url) {
        return sentinel.map_or_else(|_| "<unparsable URL>".to_owned(), |s| s.redacted());
    }
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}
