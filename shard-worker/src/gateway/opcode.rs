//! The gateway opcodes by name, so payload code reads `Opcode::Hello` rather than `10`.
//!
//! Source: discord-api-docs `developers/topics/opcodes-and-status-codes.mdx`, "Gateway Opcodes".
//! A payload keeps its raw `op` number ([`super::envelope::Envelope::op`]): an opcode Discord adds
//! later is skipped by the shard, never a parse error.

use serde::{Serialize, Serializer};

/// A gateway opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Receive: an event (`t`, `s`, `d`).
    Dispatch,
    /// Send: keep the connection alive. Receive: the gateway asks for one now.
    Heartbeat,
    /// Send: start a session (spends a session start; only with the bucket's gate).
    Identify,
    /// Send: update the bot's presence.
    PresenceUpdate,
    /// Send: join, move or leave a voice channel.
    VoiceStateUpdate,
    /// Send: resume a session (free).
    Resume,
    /// Receive: reconnect and resume.
    Reconnect,
    /// Send: ask for a guild's members.
    RequestGuildMembers,
    /// Receive: the session is invalid; `d` says whether it can be resumed.
    InvalidSession,
    /// Receive: the first payload of a connection, with the heartbeat interval.
    Hello,
    /// Receive: a heartbeat was received.
    HeartbeatAck,
    /// Send: ask for guilds' soundboard sounds.
    RequestSoundboardSounds,
    /// Send: ask for channels' info (voice channel statuses and start times).
    RequestChannelInfo,
}

impl Opcode {
    /// The opcode of a payload's `op`; `None` for a number Discord does not document.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Dispatch,
            1 => Self::Heartbeat,
            2 => Self::Identify,
            3 => Self::PresenceUpdate,
            4 => Self::VoiceStateUpdate,
            6 => Self::Resume,
            7 => Self::Reconnect,
            8 => Self::RequestGuildMembers,
            9 => Self::InvalidSession,
            10 => Self::Hello,
            11 => Self::HeartbeatAck,
            31 => Self::RequestSoundboardSounds,
            43 => Self::RequestChannelInfo,
            _ => return None,
        })
    }

    /// The number on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Dispatch => 0,
            Self::Heartbeat => 1,
            Self::Identify => 2,
            Self::PresenceUpdate => 3,
            Self::VoiceStateUpdate => 4,
            Self::Resume => 6,
            Self::Reconnect => 7,
            Self::RequestGuildMembers => 8,
            Self::InvalidSession => 9,
            Self::Hello => 10,
            Self::HeartbeatAck => 11,
            Self::RequestSoundboardSounds => 31,
            Self::RequestChannelInfo => 43,
        }
    }

    /// Whether a bot may send it through [`crate::command::Commands`]: the commands Discord lets
    /// a client send, except those the session sends itself (Heartbeat, Identify, Resume: one
    /// sent by a bot could spend a session start or break the session).
    pub fn bot_may_send(code: u8) -> bool {
        match Self::from_code(code) {
            Some(
                Self::Dispatch
                | Self::Heartbeat
                | Self::Identify
                | Self::Resume
                | Self::Reconnect
                | Self::InvalidSession
                | Self::Hello
                | Self::HeartbeatAck,
            ) => false,
            Some(
                Self::PresenceUpdate
                | Self::VoiceStateUpdate
                | Self::RequestGuildMembers
                | Self::RequestSoundboardSounds
                | Self::RequestChannelInfo,
            ) => true,
            // One Discord added after this list: a client command (the gateway sends only the
            // receive opcodes above).
            None => true,
        }
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> Self {
        opcode.code()
    }
}

/// Written as its number, as in every payload's `op`.
impl Serialize for Opcode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips_and_gaps_are_unknown() {
        let documented = (0..=u8::MAX).filter_map(Opcode::from_code);
        let mut count = 0;
        for opcode in documented {
            assert_eq!(Opcode::from_code(opcode.code()), Some(opcode));
            count += 1;
        }
        assert_eq!(count, 13);
        for gap in [5, 12, 30, 32, 42, 44] {
            assert_eq!(Opcode::from_code(gap), None, "{gap}");
        }
        assert_eq!(Opcode::Hello.code(), 10);
        assert_eq!(
            serde_json::to_string(&Opcode::HeartbeatAck).expect("json"),
            "11"
        );
    }

    #[test]
    fn a_bot_sends_commands_but_never_the_sessions_own() {
        for allowed in [3, 4, 8, 31, 43, 50] {
            assert!(Opcode::bot_may_send(allowed), "{allowed}");
        }
        for refused in [0, 1, 2, 6, 7, 9, 10, 11] {
            assert!(!Opcode::bot_may_send(refused), "{refused}");
        }
    }
}
