//! What a gateway close code means for the shard: resume, start a new session, or stop for good.
//!
//! Source: discord-api-docs `developers/topics/opcodes-and-status-codes.mdx`, "Gateway Close Event
//! Codes". A dropped TCP connection (no close frame) keeps the session resumable, as does any code
//! Discord does not list.

/// What the shard does after the gateway closed its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect and Resume the session (when there is one).
    Resume,
    /// Reconnect and Identify anew: the session is gone (4007 invalid seq, 4009 timed out).
    Reidentify,
    /// Never reconnect: retrying cannot succeed and would burn session starts.
    Fatal,
}

/// The action for a close code; `None` is a connection lost without a close frame.
pub fn action(code: Option<u16>) -> CloseAction {
    match code {
        Some(4007 | 4009) => CloseAction::Reidentify,
        Some(4004 | 4010..=4014) => CloseAction::Fatal,
        _ => CloseAction::Resume,
    }
}

/// A short, stable reason for a fatal code, for status records and metrics.
pub fn fatal_reason(code: u16) -> &'static str {
    match code {
        4004 => "authentication failed (4004): the token is invalid",
        4010 => "invalid shard (4010)",
        4011 => "sharding required (4011): too many guilds for this shard count",
        4012 => "invalid API version (4012)",
        4013 => "invalid intents (4013)",
        4014 => "disallowed intents (4014): enable them in the developer portal",
        _ => "fatal close code",
    }
}

/// The code the worker closes with when it wants the session to stay resumable: anything but
/// 1000/1001, which end the session (gateway.mdx, "Disconnecting").
pub const RESUMABLE_CLOSE: u16 = 4000;

/// The code that ends a session for good (it will not be resumed).
pub const SESSION_ENDING_CLOSE: u16 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_documented_code() {
        for code in [4000, 4001, 4002, 4003, 4005, 4008] {
            assert_eq!(action(Some(code)), CloseAction::Resume, "{code}");
        }
        for code in [4007, 4009] {
            assert_eq!(action(Some(code)), CloseAction::Reidentify, "{code}");
        }
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            assert_eq!(action(Some(code)), CloseAction::Fatal, "{code}");
            assert!(fatal_reason(code).contains(&code.to_string()));
        }
        assert_eq!(action(None), CloseAction::Resume);
        assert_eq!(action(Some(1006)), CloseAction::Resume);
    }

    #[test]
    fn our_resumable_close_is_not_a_session_ending_one() {
        assert!(!matches!(RESUMABLE_CLOSE, 1000 | 1001));
    }
}
