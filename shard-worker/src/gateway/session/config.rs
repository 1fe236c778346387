//! The timing of one shard's session: deadlines, backoffs and the Identify-loop guard's limits,
//! as [`super::Machine`] applies them.

use std::time::Duration;

/// [`SessionConfig::silent_beats`] by default: Discord's rule.
pub const DEFAULT_SILENT_BEATS: u32 = 1;
/// The most [`SessionConfig::silent_beats`] the worker accepts: at Discord's 41.25 s interval a
/// silent shard is then closed within 165 s, before the chart's `ShardsetShardSilent` (3 min).
pub const MAX_SILENT_BEATS: u32 = 3;

/// Timing of one shard's session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Time to wait for Hello after the WebSocket opened.
    pub hello_timeout: Duration,
    /// Time to wait for READY or RESUMED after Identify or Resume was sent.
    pub ready_timeout: Duration,
    /// First non-immediate reconnect delay; doubles per failed attempt.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// The wait after op 9 `false` before identifying again (Discord: 1–5 s).
    pub invalid_session_wait: (Duration, Duration),
    /// A session live (READY or RESUMED) this long proves its Identify worked: the count of
    /// Identifies in a row without a lasting session starts over.
    pub stable_after: Duration,
    /// The least wait before an Identify that follows one without a lasting session; doubles
    /// with each such Identify (with jitter), up to `identify_backoff_max`.
    pub identify_backoff_base: Duration,
    /// The longest such wait.
    pub identify_backoff_max: Duration,
    /// Identifies in a row without a lasting session after which the shard stops for good
    /// ([`Phase::IdentifyLoop`](super::Phase::IdentifyLoop)); at least 1.
    pub identify_loop_limit: u32,
    /// Heartbeats in a row that may go without an ACK: when the next one is due, the
    /// connection is silent (a zombie) and is closed and resumed. At least 1, Discord's rule
    /// (the previous heartbeat not ACKed when the next is due); the worker's
    /// `GATEWAY_SILENT_BEATS`.
    pub silent_beats: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(20),
            ready_timeout: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            invalid_session_wait: (Duration::from_secs(1), Duration::from_secs(5)),
            stable_after: Duration::from_secs(60),
            identify_backoff_base: Duration::from_secs(5),
            identify_backoff_max: Duration::from_secs(300),
            identify_loop_limit: 5,
            silent_beats: DEFAULT_SILENT_BEATS,
        }
    }
}
