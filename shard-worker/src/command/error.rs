//! Why a command was not sent, or its answer did not come.

use std::time::Duration;

use crate::gateway::bot_commands::EncodeError;

/// Why a command failed. Each says whether the command reached Discord: only
/// [`CommandError::SendFailed`] leaves it unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// Refused before sending: too large (Discord closes with 4002 past 4,096 bytes), an opcode
    /// a bot may not send, or an invalid op 8.
    #[error("refused before sending: {0}")]
    Refused(#[from] EncodeError),
    #[error("shard {shard} is not run by this worker")]
    UnknownShard { shard: u32 },
    /// Called from within the dispatch of the same shard, for an answer that can only arrive
    /// on that shard after the dispatch returns: spawn the request instead.
    #[error(
        "request_guild_members for shard {shard} awaited inside that shard's dispatch: its chunks \
         arrive only after the dispatch returns (spawn the request)"
    )]
    InsideDispatch { shard: u32 },
    /// The shard's session was not live (resuming, reconnecting, waiting for its Identify) for
    /// this long: not sent.
    #[error("shard {shard} had no live session for {waited:?}: not sent")]
    NotLive { shard: u32, waited: Duration },
    /// Still queued after this long (the send limit lets 120 commands per minute through): not
    /// sent.
    #[error("shard {shard} did not send the command within {after:?}: not sent")]
    QueueTimeout { shard: u32, after: Duration },
    /// The shard stopped (shutdown, a lost lease, closed for good) before sending or answering.
    #[error("shard {shard} stopped")]
    ShardStopped { shard: u32 },
    /// Writing to the socket failed (the connection dropped): the command may or may not have
    /// reached Discord.
    #[error("shard {shard}: the connection failed while sending")]
    SendFailed { shard: u32 },
    /// Called from within the dispatch of the same shard while its queue is full: the queue
    /// drains only after the dispatch returns, so the call cannot wait for room.
    #[error("shard {shard}: the command queue is full (called inside that shard's dispatch)")]
    QueueFull { shard: u32 },
    /// op 8 was sent but its last chunk did not come within this long.
    #[error("shard {shard}: no complete answer within {after:?}")]
    NoAnswer { shard: u32, after: Duration },
    /// op 8 was sent, then the session was replaced by a new one (its answer is lost).
    #[error("shard {shard}: the session ended before the answer came")]
    SessionLost { shard: u32 },
    /// Discord answered RATE_LIMITED (since 2025: all members of a guild at most once per 30 s).
    #[error("rate limited: retry {opcode} for guild {guild_id:?} after {retry_after:?}")]
    RateLimited {
        opcode: u8,
        retry_after: Duration,
        guild_id: Option<u64>,
    },
}

impl CommandError {
    /// A fixed label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Refused(EncodeError::TooLarge { .. }) => "too_large",
            Self::Refused(_) => "invalid",
            Self::UnknownShard { .. } => "unknown_shard",
            Self::InsideDispatch { .. } => "inside_dispatch",
            Self::NotLive { .. } => "not_live",
            Self::QueueTimeout { .. } => "queue_timeout",
            Self::QueueFull { .. } => "queue_full",
            Self::ShardStopped { .. } => "shard_stopped",
            Self::SendFailed { .. } => "send_failed",
            Self::NoAnswer { .. } => "no_answer",
            Self::SessionLost { .. } => "session_lost",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        let too_large = CommandError::from(EncodeError::TooLarge { bytes: 5_000 });
        assert_eq!(
            too_large.to_string(),
            "refused before sending: the payload is 5000 bytes; Discord accepts at most 4096"
        );
        assert_eq!(too_large.metric_label(), "too_large");
        let limited = CommandError::RateLimited {
            opcode: 8,
            retry_after: Duration::from_millis(1_500),
            guild_id: Some(7),
        };
        assert_eq!(
            limited.to_string(),
            "rate limited: retry 8 for guild Some(7) after 1.5s"
        );
    }
}
