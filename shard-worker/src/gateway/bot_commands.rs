//! What a bot asks its shards to send ([`BotCommand`]): op 3 Presence Update, op 4 Voice State
//! Update, op 8 Request Guild Members, and opcodes the worker does not model (31 Request
//! Soundboard Sounds, 43 Request Channel Info, ...) as raw JSON. Each is encoded here and checked
//! before it is queued: Discord closes a connection whose client sends a payload over 4,096 bytes
//! (4002), so such a command is refused with an error instead.
//!
//! Source: discord-api-docs `developers/events/gateway-events.mdx` ("Update Presence", "Update
//! Voice State", "Request Guild Members") and `developers/events/gateway.mdx` ("Sending
//! Events": payloads are limited to 4,096 bytes). Snowflakes are written as strings, as Discord
//! writes them.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::opcode::Opcode;

/// The largest payload a client may send, in bytes (Discord closes with 4002 past it).
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Most `user_ids` one op 8 may ask for.
pub const MAX_USER_IDS: usize = 100;
/// Longest op 8 nonce Discord echoes (a longer one is dropped from the chunks).
pub const MAX_NONCE_BYTES: usize = 32;

/// Why a command cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("the payload is {bytes} bytes; Discord accepts at most {MAX_PAYLOAD_BYTES}")]
    TooLarge { bytes: usize },
    #[error("opcode {0} is not a command a bot may send (the session sends 1, 2 and 6 itself)")]
    Opcode(u8),
    #[error("{0}")]
    Invalid(&'static str),
}

/// op 3: the bot's presence (`status`, `activities`, `afk`, `since`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    /// Unix time in ms since the bot went idle; `None` when it is not idle.
    pub since: Option<u64>,
    pub activities: Vec<Activity>,
    pub status: Status,
    pub afk: bool,
}

impl Presence {
    /// `status` with no activity, not idle.
    pub fn new(status: Status) -> Self {
        Self {
            since: None,
            activities: Vec::new(),
            status,
            afk: false,
        }
    }

    /// Adds an activity.
    pub fn activity(mut self, activity: Activity) -> Self {
        self.activities.push(activity);
        self
    }
}

/// A presence status ("Status Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Dnd,
    Idle,
    Invisible,
    Offline,
}

/// An activity of a bot's presence (bots may set `name`, `type`, `state` and `url`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub name: String,
    /// "Activity Types": 0 Playing, 1 Streaming, 2 Listening, 3 Watching, 4 Custom, 5 Competing.
    #[serde(rename = "type")]
    pub kind: u8,
    /// For a custom status (type 4), the text shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For Streaming (type 1): the stream's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Activity {
    /// An activity of `kind` named `name`.
    pub fn new(kind: u8, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            state: None,
            url: None,
        }
    }
}

/// op 4: join (`channel_id`), move, or leave (`None`) a voice channel of a guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VoiceState {
    #[serde(serialize_with = "snowflake")]
    pub guild_id: u64,
    #[serde(serialize_with = "optional_snowflake")]
    pub channel_id: Option<u64>,
    pub self_mute: bool,
    pub self_deaf: bool,
}

/// op 8: members of one guild, by username prefix or by id. The nonce that matches the answer's
/// chunks is added when the request is sent ([`crate::command::Commands::request_guild_members`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRequest {
    #[serde(serialize_with = "snowflake")]
    pub guild_id: u64,
    /// Username prefix; `""` with `limit` 0 asks for every member (needs the GUILD_MEMBERS
    /// intent; since 2025 once per guild per 30 s, else RATE_LIMITED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Most members to return (0: no limit, for `query: ""` only).
    pub limit: u32,
    /// Also return their presences (needs the GUILD_PRESENCES intent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub presences: bool,
    /// These members (at most 100), instead of a query.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "snowflakes")]
    pub user_ids: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl MemberRequest {
    /// Every member of `guild_id` (`query: ""`, `limit: 0`).
    pub fn all(guild_id: u64) -> Self {
        Self::query(guild_id, "", 0)
    }

    /// Members whose username starts with `prefix`, at most `limit`.
    pub fn query(guild_id: u64, prefix: impl Into<String>, limit: u32) -> Self {
        Self {
            guild_id,
            query: Some(prefix.into()),
            limit,
            presences: false,
            user_ids: Vec::new(),
            nonce: None,
        }
    }

    /// The members with these ids (at most 100).
    pub fn users(guild_id: u64, user_ids: impl IntoIterator<Item = u64>) -> Self {
        Self {
            guild_id,
            query: None,
            limit: 0,
            presences: false,
            user_ids: user_ids.into_iter().collect(),
            nonce: None,
        }
    }

    /// Also ask for their presences.
    pub fn with_presences(mut self) -> Self {
        self.presences = true;
        self
    }

    /// Whether it asks for every member of the guild (the request Discord limits per guild).
    pub fn is_all_members(&self) -> bool {
        self.query.as_deref() == Some("") && self.limit == 0 && self.user_ids.is_empty()
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.query.is_some() != self.user_ids.is_empty() {
            return Err(EncodeError::Invalid(
                "op 8 takes either a query or user_ids (not both, not neither)",
            ));
        }
        if self.user_ids.len() > MAX_USER_IDS {
            return Err(EncodeError::Invalid("op 8 takes at most 100 user_ids"));
        }
        if self
            .nonce
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NONCE_BYTES)
        {
            return Err(EncodeError::Invalid(
                "an op 8 nonce is at most 32 bytes (a longer one is not echoed)",
            ));
        }
        Ok(())
    }
}

/// A command a bot sends on one of its shards.
#[derive(Debug, Clone)]
pub enum BotCommand {
    PresenceUpdate(Presence),
    VoiceStateUpdate(VoiceState),
    RequestGuildMembers(MemberRequest),
    /// Any other opcode a client may send, with its `d` as JSON.
    Raw {
        op: u8,
        d: Box<RawValue>,
    },
}

impl BotCommand {
    /// A raw command: opcode `op` with `d`.
    pub fn raw(op: impl Into<u8>, d: &impl Serialize) -> Result<Self, EncodeError> {
        let d = serde_json::value::to_raw_value(d)
            .map_err(|_| EncodeError::Invalid("`d` cannot be written as JSON"))?;
        Ok(Self::Raw { op: op.into(), d })
    }

    /// The opcode on the wire.
    pub fn opcode(&self) -> u8 {
        match self {
            Self::PresenceUpdate(_) => Opcode::PresenceUpdate.code(),
            Self::VoiceStateUpdate(_) => Opcode::VoiceStateUpdate.code(),
            Self::RequestGuildMembers(_) => Opcode::RequestGuildMembers.code(),
            Self::Raw { op, .. } => *op,
        }
    }

    /// The payload `{"op":..,"d":..}`, checked: an opcode a bot may send, a valid op 8, at most
    /// [`MAX_PAYLOAD_BYTES`].
    pub fn encode(&self) -> Result<String, EncodeError> {
        #[derive(Serialize)]
        struct Payload<'a, D: Serialize> {
            op: u8,
            d: &'a D,
        }
        let op = self.opcode();
        if !Opcode::bot_may_send(op) {
            return Err(EncodeError::Opcode(op));
        }
        let json = match self {
            Self::PresenceUpdate(d) => serde_json::to_string(&Payload { op, d }),
            Self::VoiceStateUpdate(d) => serde_json::to_string(&Payload { op, d }),
            Self::RequestGuildMembers(d) => {
                d.check()?;
                serde_json::to_string(&Payload { op, d })
            }
            Self::Raw { d, .. } => serde_json::to_string(&Payload { op, d }),
        }
        .map_err(|_| EncodeError::Invalid("the command cannot be written as JSON"))?;
        if json.len() > MAX_PAYLOAD_BYTES {
            return Err(EncodeError::TooLarge { bytes: json.len() });
        }
        Ok(json)
    }
}

fn snowflake<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

fn optional_snowflake<S: Serializer>(id: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.collect_str(id),
        None => serializer.serialize_none(),
    }
}

fn snowflakes<S: Serializer>(ids: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(ids.iter().map(u64::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parsed(command: &BotCommand) -> Value {
        serde_json::from_str(&command.encode().expect("encode")).expect("json")
    }

    #[test]
    fn payloads_have_discords_shapes() {
        let presence = Presence::new(Status::Dnd).activity(Activity::new(0, "chess"));
        assert_eq!(
            parsed(&BotCommand::PresenceUpdate(presence)),
            json!({"op": 3, "d": {"since": null, "activities": [{"name": "chess", "type": 0}],
                "status": "dnd", "afk": false}})
        );
        let voice = VoiceState {
            guild_id: 41_771_983_423_143_937,
            channel_id: Some(127_121_515_262_115_840),
            self_mute: false,
            self_deaf: true,
        };
        assert_eq!(
            parsed(&BotCommand::VoiceStateUpdate(voice)),
            json!({"op": 4, "d": {"guild_id": "41771983423143937",
                "channel_id": "127121515262115840", "self_mute": false, "self_deaf": true}})
        );
        let leave = VoiceState {
            channel_id: None,
            ..voice
        };
        assert_eq!(
            parsed(&BotCommand::VoiceStateUpdate(leave))["d"]["channel_id"],
            Value::Null
        );
        let mut all = MemberRequest::all(7);
        all.nonce = Some("n1".into());
        assert!(all.is_all_members());
        assert_eq!(
            parsed(&BotCommand::RequestGuildMembers(all)),
            json!({"op": 8, "d": {"guild_id": "7", "query": "", "limit": 0, "nonce": "n1"}})
        );
        let users = MemberRequest::users(7, [1, 2]).with_presences();
        assert!(!users.is_all_members());
        assert_eq!(
            parsed(&BotCommand::RequestGuildMembers(users))["d"],
            json!({"guild_id": "7", "limit": 0, "presences": true, "user_ids": ["1", "2"]})
        );
        let raw =
            BotCommand::raw(Opcode::RequestChannelInfo, &json!({"guild_id": "7"})).expect("raw");
        assert_eq!(parsed(&raw), json!({"op": 43, "d": {"guild_id": "7"}}));
    }

    #[test]
    fn oversize_and_invalid_commands_are_refused_before_sending() {
        let long = Presence::new(Status::Online).activity(Activity::new(0, "x".repeat(5_000)));
        assert!(matches!(
            BotCommand::PresenceUpdate(long).encode(),
            Err(EncodeError::TooLarge { bytes }) if bytes > MAX_PAYLOAD_BYTES
        ));
        // Exactly at the limit is fine, one byte over is not.
        let pad = |n: usize| BotCommand::raw(31u8, &"y".repeat(n)).expect("raw");
        let base = pad(0).encode().expect("encode").len();
        assert_eq!(
            pad(MAX_PAYLOAD_BYTES - base)
                .encode()
                .expect("at the limit")
                .len(),
            MAX_PAYLOAD_BYTES
        );
        assert!(pad(MAX_PAYLOAD_BYTES - base + 1).encode().is_err());
        for op in [1u8, 2, 6, 0, 10] {
            assert_eq!(
                BotCommand::raw(op, &json!({})).expect("raw").encode(),
                Err(EncodeError::Opcode(op))
            );
        }
        assert_eq!(
            BotCommand::raw(3u8, &json!({})).expect("raw").opcode(),
            Opcode::PresenceUpdate.code()
        );
        let too_many = MemberRequest::users(7, 0..101);
        assert!(BotCommand::RequestGuildMembers(too_many).encode().is_err());
        let neither = MemberRequest {
            query: None,
            ..MemberRequest::all(7)
        };
        assert!(BotCommand::RequestGuildMembers(neither).encode().is_err());
        let mut long_nonce = MemberRequest::all(7);
        long_nonce.nonce = Some("n".repeat(33));
        assert!(
            BotCommand::RequestGuildMembers(long_nonce)
                .encode()
                .is_err()
        );
    }
}
