//! The words of the session machine: its [`Phase`]s, the [`Input`]s the shard loop feeds it, the
//! [`Action`]s it returns, and what a session needs to be resumed ([`Resumable`], [`Target`]).

use std::time::Duration;

/// What a shard can resume: the session of its last READY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumable {
    pub session_id: String,
    pub resume_gateway_url: String,
}

/// Where the shard is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// Waiting before the next connection attempt.
    Backoff,
    /// Opening the WebSocket.
    Connecting,
    /// Connected, waiting for op 10 Hello.
    AwaitingHello,
    /// Heartbeating, waiting for the Identify permit (the bucket's gate).
    AwaitingPermit,
    /// Identify sent, waiting for READY.
    Identifying,
    /// Resume sent, waiting for RESUMED.
    Resuming,
    /// READY or RESUMED: dispatches flow.
    Active,
    /// Closed with a code that forbids reconnecting.
    Fatal(u16),
    /// Stopped for good: `identify_loop_limit` Identifies in a row led to no lasting session
    /// (each spent a session start; more would only drain the budget).
    IdentifyLoop,
    /// Shut down.
    Stopped,
}

impl Phase {
    /// True while a WebSocket is open (or opening).
    pub fn connected(self) -> bool {
        matches!(
            self,
            Self::Connecting
                | Self::AwaitingHello
                | Self::AwaitingPermit
                | Self::Identifying
                | Self::Resuming
                | Self::Active
        )
    }

    /// What an op 9 Invalid Session received in this phase answered, as the fixed label of
    /// `shardset_worker_invalid_sessions_total{after}`: `identify` (Discord refused an Identify,
    /// e.g. one too many in its bucket's window), `resume` (a failed resume), `session` (on an
    /// established session, or before either was sent).
    pub fn invalid_session_after(self) -> &'static str {
        match self {
            Self::Identifying => "identify",
            Self::Resuming => "resume",
            _ => "session",
        }
    }

    /// True while heartbeats run (from Hello until the connection ends).
    pub(super) fn heartbeating(self) -> bool {
        matches!(
            self,
            Self::AwaitingPermit | Self::Identifying | Self::Resuming | Self::Active
        )
    }
}

/// Something that happened to the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin: connect for the first time.
    Start,
    /// The WebSocket opened.
    Connected,
    /// The WebSocket could not be opened.
    ConnectFailed,
    /// op 10 Hello.
    Hello { heartbeat_interval: Duration },
    /// op 11 Heartbeat ACK.
    HeartbeatAck,
    /// op 1 from the server: send a heartbeat now.
    HeartbeatRequest,
    /// The heartbeat timer fired.
    HeartbeatDue,
    /// The Identify permit (bucket gate) was granted.
    PermitGranted,
    /// Any op 0 dispatch, with its sequence number.
    Dispatch { seq: u64 },
    /// The READY dispatch (after its `Dispatch`).
    Ready(Resumable),
    /// The RESUMED dispatch (after its `Dispatch`).
    Resumed,
    /// op 7 Reconnect.
    Reconnect,
    /// op 9 Invalid Session; `resumable` is its `d`.
    InvalidSession { resumable: bool },
    /// The connection ended: a close frame with `code`, or none (TCP dropped).
    Closed { code: Option<u16> },
    /// The phase deadline (Hello/READY timeout, end of a backoff) passed.
    Deadline,
    /// SIGTERM or the owner dropped the shard.
    Shutdown,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The gateway URL from `GET /gateway/bot`, to Identify.
    Gateway,
    /// The session's `resume_gateway_url`, to Resume.
    Resume(String),
}

/// What the loop must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a WebSocket to the target.
    Connect(Target),
    /// Close the WebSocket with this code and forget it.
    Disconnect { code: u16 },
    /// Send op 1 with the last sequence number. `requested`: an answer to the server's op 1,
    /// which may be skipped when the send limit has no room (the regular beats may not).
    SendHeartbeat { seq: Option<u64>, requested: bool },
    /// Send op 2 Identify (the loop holds the permit and confirms it once sent).
    SendIdentify,
    /// Send op 6 Resume.
    SendResume { session_id: String, seq: u64 },
    /// (Re)arm the heartbeat timer to fire after this long.
    ArmHeartbeat(Duration),
    /// Stop the heartbeat timer.
    DisarmHeartbeat,
    /// Set the phase deadline this long from now (replaces any other).
    SetDeadline(Duration),
    /// No phase deadline.
    ClearDeadline,
    /// Start waiting for the Identify permit.
    RequestPermit,
    /// Give up any pending or held permit (nothing was sent with it).
    CancelPermit,
    /// The session is live (READY or RESUMED): save it, report it.
    SessionLive { resumed: bool },
    /// The session lasted `stable_after`: the Identifies before it worked, and the count of
    /// them kept beyond this process (`Keys::identify_streak`) starts over.
    ForgetIdentifyStreak,
    /// The connection fell silent: `unacked` heartbeats in a row, `interval` apart, got no
    /// ACK (a zombie connection); it is closed and resumed.
    Zombie { unacked: u32, interval: Duration },
    /// Leave the loop. `code` is the close code if a connection is still open.
    Stop { code: Option<u16> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_session_is_labelled_by_what_it_answered() {
        assert_eq!(Phase::Identifying.invalid_session_after(), "identify");
        assert_eq!(Phase::Resuming.invalid_session_after(), "resume");
        for phase in [Phase::Active, Phase::AwaitingPermit, Phase::AwaitingHello] {
            assert_eq!(phase.invalid_session_after(), "session", "{phase:?}");
        }
    }
}
