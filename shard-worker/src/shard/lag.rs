//! How late each dispatch is handled: its age when the handler returns, from its arrival on the
//! socket and, for events that carry their creation time, from that (the histogram
//! `shardset_worker_dispatch_age_seconds{layout,since}`), and the shard's pace on the board
//! ([`crate::handover::pace`]: a dispatch handled at or past the lag bound makes the shard late).
//!
//! The age from arrival misses what waits in the socket while the handler is busy (the shard
//! reads the next frame only when the handler returned); the age from creation sees it, and a
//! resume's replay too, on the events that say when they were made: those whose `d.id` is a
//! snowflake created with them (discord-api-docs `developers/reference.mdx`, "Snowflakes": the
//! top 42 bits are ms since 2015-01-01), which is `MESSAGE_CREATE` and `INTERACTION_CREATE`.
//! That age includes the clock difference between Discord and the pod.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;

use crate::gateway::field_scan;
use crate::worker::board::{Board, Slot};
use crate::worker::metrics::DispatchAgeLabels;

/// The Discord epoch (2015-01-01T00:00:00Z) in Unix ms.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// A creation time older than this is not taken as the event's (an id reused, a clock far off):
/// no replay is that old (Discord's sessions are resumable for minutes).
const CREATED_AGE_LIMIT: Duration = Duration::from_secs(3_600);

/// The age histograms of one layout, cached per session (looking a labelled series up costs a
/// map lookup and an allocation), and the lag bound.
pub(super) struct DispatchAge {
    received: Histogram,
    created: Histogram,
    bound_ms: u64,
}

impl DispatchAge {
    pub(super) fn new(board: &Board, layout: &str, bound_ms: u64) -> Self {
        let series = |since| {
            board
                .metrics()
                .dispatch_age
                .get_or_create(&DispatchAgeLabels {
                    layout: layout.to_owned(),
                    since,
                })
                .clone()
        };
        Self {
            received: series("received"),
            created: series("created"),
            bound_ms,
        }
    }

    /// The dispatch `event` (payload `data`) that arrived at `arrived` returned from the handler
    /// at `now` ([`HandledAt`], read once for every use of a dispatch's clock): its ages are
    /// observed, and the shard's pace told when it is late or was late.
    pub(super) fn handled(
        &self,
        board: &Board,
        slot: &Slot,
        event: &str,
        data: &str,
        arrived: Instant,
        now: &HandledAt,
    ) {
        let received = now.instant.saturating_duration_since(arrived);
        self.received.observe(received.as_secs_f64());
        let mut lag_ms = received.as_millis() as u64;
        if let Some(age) = created_at_ms(event, data).and_then(|at| age_of(at, now.unix_ms)) {
            self.created.observe(age.as_secs_f64());
            lag_ms = lag_ms.max(age.as_millis() as u64);
        }
        if lag_ms >= self.bound_ms || slot.late() {
            board.dispatch_handled(slot, lag_ms, self.bound_ms);
        }
    }
}

/// The two clocks read once when a dispatch's handler returned: the monotonic one (its age since
/// arrival; the next turn's heartbeat check) and Unix time (its age since creation; when it
/// arrived, for `last_dispatch_timestamp_seconds`). Five clock reads per dispatch were 3 % of the
/// worker's CPU at 5,000 dispatches/s; this makes them three with the arrival's.
pub(super) struct HandledAt {
    pub(super) instant: Instant,
    pub(super) unix_ms: u64,
}

impl HandledAt {
    pub(super) fn now() -> Self {
        Self {
            instant: Instant::now(),
            unix_ms: unix_ms(),
        }
    }

    /// The Unix time (ms) of `arrived`, an instant at or before this one.
    pub(super) fn unix_ms_at(&self, arrived: Instant) -> u64 {
        let since = self.instant.saturating_duration_since(arrived).as_millis() as u64;
        self.unix_ms.saturating_sub(since)
    }
}

/// When Discord created the event, for events whose `d.id` is a snowflake made with them.
/// Only `d.id` is read, not the whole payload ([`field_scan`]): this runs on every dispatch.
pub fn created_at_ms(event: &str, data: &str) -> Option<u64> {
    if !matches!(event, "MESSAGE_CREATE" | "INTERACTION_CREATE") {
        return None;
    }
    let id: u64 = field_scan::top_level_str(data, "id")?.parse().ok()?;
    Some((id >> 22) + DISCORD_EPOCH_MS)
}

/// The age at `now_ms` of what was created at `created_ms` (0 for a time ahead of ours); `None`
/// past [`CREATED_AGE_LIMIT`].
fn age_of(created_ms: u64, now_ms: u64) -> Option<Duration> {
    let age = Duration::from_millis(now_ms.saturating_sub(created_ms));
    (age <= CREATED_AGE_LIMIT).then_some(age)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_interactions_say_when_they_were_created() {
        // The docs' example snowflake: 175928847299117063 was made at 1462015105796.
        let data = r#"{"id":"175928847299117063","channel_id":"1","content":"hi"}"#;
        assert_eq!(
            created_at_ms("MESSAGE_CREATE", data),
            Some(1_462_015_105_796)
        );
        assert_eq!(
            created_at_ms("INTERACTION_CREATE", data),
            Some(1_462_015_105_796)
        );
        // A guild's id is when the guild was made, not the event.
        assert_eq!(created_at_ms("GUILD_CREATE", data), None);
        for bad in ["null", "{}", r#"{"id":7}"#, r#"{"id":"x"}"#, "{"] {
            assert_eq!(created_at_ms("MESSAGE_CREATE", bad), None, "{bad}");
        }
    }

    #[test]
    fn the_arrival_in_unix_time_is_the_handled_time_less_the_age() {
        let arrived = Instant::now();
        let now = HandledAt {
            instant: arrived + Duration::from_millis(1_500),
            unix_ms: 10_000_000,
        };
        assert_eq!(now.unix_ms_at(arrived), 9_998_500);
        assert_eq!(now.unix_ms_at(now.instant), 10_000_000);
        // An instant after the reading (never passed) counts as the reading, not the future.
        assert_eq!(
            now.unix_ms_at(now.instant + Duration::from_secs(1)),
            10_000_000
        );
        let at_epoch = HandledAt {
            instant: arrived + Duration::from_secs(5),
            unix_ms: 1_000,
        };
        assert_eq!(at_epoch.unix_ms_at(arrived), 0, "saturates, never wraps");
    }

    #[test]
    fn ages_are_never_negative_and_never_absurd() {
        assert_eq!(age_of(1_000, 1_250), Some(Duration::from_millis(250)));
        assert_eq!(age_of(2_000, 1_000), Some(Duration::ZERO), "clock ahead");
        assert_eq!(age_of(0, 2 * 3_600_000), None, "older than any replay");
    }
}
