//! The commands a client sends once authenticated, read and checked against the shapes that
//! discord-api-docs `developers/events/gateway-events.mdx` documents ("Update Presence", "Update
//! Voice State", "Request Guild Members"). A `d` that breaks its opcode's shape is "an invalid
//! payload for an opcode", which Discord closes with 4001 (`opcodes-and-status-codes.mdx`); the
//! `Err` strings say what was wrong. Pure: the connection applies the verdicts.

use serde_json::{Map, Value};

use crate::rules;
use crate::world;

/// The opcodes a client may send on an authenticated connection, besides Heartbeat
/// (opcodes-and-status-codes.mdx, "Gateway Opcodes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCommand {
    PresenceUpdate,
    VoiceStateUpdate,
    RequestGuildMembers,
    /// Answered with SOUNDBOARD_SOUNDS on Discord; recorded, not answered, here.
    RequestSoundboardSounds,
    /// Answered with CHANNEL_INFO on Discord; recorded, not answered, here.
    RequestChannelInfo,
}

impl ClientCommand {
    /// The command of an opcode, if it is one.
    pub fn from_op(op: u64) -> Option<Self> {
        Some(match op {
            3 => Self::PresenceUpdate,
            4 => Self::VoiceStateUpdate,
            8 => Self::RequestGuildMembers,
            31 => Self::RequestSoundboardSounds,
            43 => Self::RequestChannelInfo,
            _ => return None,
        })
    }

    /// The opcode.
    pub fn op(self) -> u8 {
        match self {
            Self::PresenceUpdate => 3,
            Self::VoiceStateUpdate => 4,
            Self::RequestGuildMembers => 8,
            Self::RequestSoundboardSounds => 31,
            Self::RequestChannelInfo => 43,
        }
    }
}

/// op 3's statuses ("Status Types").
const STATUSES: [&str; 5] = ["online", "dnd", "idle", "invisible", "offline"];
/// The highest activity type ("Activity Types": 0 Playing … 5 Competing).
const MAX_ACTIVITY_TYPE: u64 = 5;
/// Most user ids one op 8 may ask for ("Requesting `user_ids` … limited to 100 members").
pub const MAX_USER_IDS: usize = 100;
/// Most members a prefix query returns ("Requesting a prefix … a maximum of 100 members").
pub const MAX_QUERY_MEMBERS: u32 = 100;
/// Longest nonce echoed in the chunks; a longer one is ignored, not refused ("Nonce can only be
/// up to 32 bytes. If you send an invalid nonce it will be ignored").
const MAX_NONCE_BYTES: usize = 32;

/// A snowflake as Discord reads one: a string of digits or a JSON integer.
pub fn snowflake(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn object(d: &Value) -> Result<&Map<String, Value>, String> {
    d.as_object()
        .ok_or_else(|| "`d` is not an object".to_owned())
}

fn boolean(d: &Map<String, Value>, field: &str) -> Result<bool, String> {
    d.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("`{field}` must be a boolean"))
}

fn guild_id(d: &Map<String, Value>) -> Result<u64, String> {
    match d.get("guild_id") {
        Some(Value::Array(_)) => {
            Err("`guild_id` must be one snowflake: one guild per request".into())
        }
        Some(value) => snowflake(value).ok_or_else(|| "`guild_id` is not a snowflake".into()),
        None => Err("`guild_id` is missing".into()),
    }
}

/// Checks op 3 Update Presence's `d`: `since` (null or integer), `activities` (objects with a
/// string `name` and a known `type`), `status`, `afk`.
pub fn presence_update(d: &Value) -> Result<(), String> {
    let d = object(d)?;
    match d.get("since") {
        Some(Value::Null) => {}
        Some(since) if since.as_u64().is_some() => {}
        _ => return Err("`since` must be null or a Unix time in ms".into()),
    }
    let activities = d
        .get("activities")
        .and_then(Value::as_array)
        .ok_or("`activities` must be an array")?;
    for activity in activities {
        let name = activity.get("name").and_then(Value::as_str);
        let kind = activity.get("type").and_then(Value::as_u64);
        if name.is_none() || kind.is_none_or(|k| k > MAX_ACTIVITY_TYPE) {
            return Err(format!(
                "activity {activity} needs a string `name` and a `type` of 0-{MAX_ACTIVITY_TYPE}"
            ));
        }
    }
    let status = d.get("status").and_then(Value::as_str);
    if !status.is_some_and(|s| STATUSES.contains(&s)) {
        return Err(format!("`status` must be one of {STATUSES:?}"));
    }
    boolean(d, "afk")?;
    Ok(())
}

/// Checks op 4 Update Voice State's `d` (`guild_id`, `channel_id` null or a snowflake,
/// `self_mute`, `self_deaf`); returns the guild it is for.
pub fn voice_state_update(d: &Value) -> Result<u64, String> {
    let d = object(d)?;
    let guild = guild_id(d)?;
    match d.get("channel_id") {
        Some(Value::Null) => {}
        Some(channel) if snowflake(channel).is_some() => {}
        _ => return Err("`channel_id` must be null (to leave) or a snowflake".into()),
    }
    boolean(d, "self_mute")?;
    boolean(d, "self_deaf")?;
    Ok(guild)
}

/// Which members an op 8 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberSelector {
    /// Members whose username starts with `prefix` (ignoring case), at most `limit`; `limit` 0
    /// with an empty prefix is every member.
    Query { prefix: String, limit: u32 },
    /// These users (members found, the others listed as `not_found`).
    UserIds(Vec<u64>),
}

/// An op 8 Request Guild Members, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRequest {
    pub guild_id: u64,
    pub selector: MemberSelector,
    pub presences: bool,
    /// The nonce to echo; `None` when absent or invalid (not a string, or over 32 bytes).
    pub nonce: Option<String>,
}

impl MemberRequest {
    /// A request for the whole member list (`query: ""`, `limit: 0`): the one that Discord
    /// limits to once per guild per 30 s (change-log.mdx, August 14, 2025).
    pub fn is_all_members(&self) -> bool {
        matches!(&self.selector, MemberSelector::Query { prefix, limit: 0 } if prefix.is_empty())
    }

    /// An empty query lists the member list, which needs the GUILD_MEMBERS intent
    /// ("`GUILD_MEMBERS` intent is required to request the entire member list").
    pub fn needs_members_intent(&self) -> bool {
        matches!(&self.selector, MemberSelector::Query { prefix, .. } if prefix.is_empty())
    }

    /// Most members the request may return.
    pub fn max_members(&self) -> usize {
        match &self.selector {
            MemberSelector::Query { prefix, limit: 0 } if prefix.is_empty() => usize::MAX,
            MemberSelector::Query { prefix, limit } if prefix.is_empty() => *limit as usize,
            MemberSelector::Query { limit, .. } => {
                let limit = if *limit == 0 {
                    MAX_QUERY_MEMBERS
                } else {
                    *limit
                };
                limit.min(MAX_QUERY_MEMBERS) as usize
            }
            MemberSelector::UserIds(ids) => ids.len(),
        }
    }
}

/// Reads op 8 Request Guild Members' `d`: one `guild_id`; `user_ids` (a snowflake or up to 100)
/// or `query` with `limit`; `presences`; `nonce`. When both `user_ids` and `query` are given,
/// `user_ids` is answered.
pub fn request_guild_members(d: &Value) -> Result<MemberRequest, String> {
    let d = object(d)?;
    let guild_id = guild_id(d)?;
    let selector = match (d.get("user_ids"), d.get("query")) {
        (Some(ids), _) => {
            let ids = match ids {
                Value::Array(ids) => ids.iter().map(snowflake).collect::<Option<Vec<u64>>>(),
                one => snowflake(one).map(|id| vec![id]),
            }
            .ok_or("`user_ids` must be a snowflake or an array of snowflakes")?;
            if ids.len() > MAX_USER_IDS {
                return Err(format!(
                    "`user_ids` holds {} ids; at most {MAX_USER_IDS}",
                    ids.len()
                ));
            }
            MemberSelector::UserIds(ids)
        }
        (None, Some(query)) => {
            let prefix = query.as_str().ok_or("`query` must be a string")?.to_owned();
            let limit = d
                .get("limit")
                .and_then(Value::as_u64)
                .ok_or("`limit` (an integer) is required with `query`")?;
            MemberSelector::Query {
                prefix,
                limit: limit.min(u64::from(u32::MAX)) as u32,
            }
        }
        (None, None) => return Err("one of `query` or `user_ids` is required".into()),
    };
    let presences = match d.get("presences") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`presences` must be a boolean".into()),
    };
    let nonce = d
        .get("nonce")
        .and_then(Value::as_str)
        .filter(|n| n.len() <= MAX_NONCE_BYTES)
        .map(str::to_owned);
    Ok(MemberRequest {
        guild_id,
        selector,
        presences,
        nonce,
    })
}

/// The index of a guild a command names, if the guild is one of the bot's and on `shard`;
/// otherwise why not. Discord answers nothing for such a command.
pub fn guild_on_shard(guild_id: u64, guilds: u32, shard: [u32; 2]) -> Result<u32, String> {
    let index = world::guild_index(guild_id, guilds)
        .ok_or_else(|| format!("guild {guild_id} is not one of the bot's"))?;
    let on = rules::shard_for_guild(guild_id, shard[1]);
    if on != shard[0] {
        return Err(format!(
            "guild {guild_id} is on shard [{on}, {}], not on this session's shard [{}, {}]",
            shard[1], shard[0], shard[1]
        ));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn opcodes_round_trip() {
        for op in [3, 4, 8, 31, 43] {
            assert_eq!(
                ClientCommand::from_op(op).map(|c| u64::from(c.op())),
                Some(op)
            );
        }
        assert_eq!(ClientCommand::from_op(2), None);
        assert_eq!(ClientCommand::from_op(11), None);
    }

    #[test]
    fn presence_updates_have_the_documented_shape() {
        let good = json!({"since": null, "activities": [{"name": "tests", "type": 0}],
                          "status": "online", "afk": false});
        assert_eq!(presence_update(&good), Ok(()));
        assert_eq!(
            presence_update(
                &json!({"since": 91879201, "activities": [], "status": "idle", "afk": true})
            ),
            Ok(())
        );
        for bad in [
            json!({"activities": [], "status": "online", "afk": false}),
            json!({"since": null, "activities": {}, "status": "online", "afk": false}),
            json!({"since": null, "activities": [{"type": 0}], "status": "online", "afk": false}),
            json!({"since": null, "activities": [{"name": "x", "type": 9}], "status": "online", "afk": false}),
            json!({"since": null, "activities": [], "status": "away", "afk": false}),
            json!({"since": null, "activities": [], "status": "online"}),
            json!({"since": "now", "activities": [], "status": "online", "afk": false}),
            json!("online"),
        ] {
            assert!(presence_update(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn voice_state_updates_name_their_guild() {
        let join = json!({"guild_id": "41771983423143937", "channel_id": "127121515262115840",
                          "self_mute": false, "self_deaf": false});
        assert_eq!(voice_state_update(&join), Ok(41_771_983_423_143_937));
        let leave =
            json!({"guild_id": 7, "channel_id": null, "self_mute": true, "self_deaf": true});
        assert_eq!(voice_state_update(&leave), Ok(7));
        for bad in [
            json!({"channel_id": null, "self_mute": false, "self_deaf": false}),
            json!({"guild_id": "1", "self_mute": false, "self_deaf": false}),
            json!({"guild_id": "1", "channel_id": "x", "self_mute": false, "self_deaf": false}),
            json!({"guild_id": "1", "channel_id": null, "self_mute": "no", "self_deaf": false}),
        ] {
            assert!(voice_state_update(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn member_requests_read_query_user_ids_presences_and_nonce() {
        let all = request_guild_members(&json!({"guild_id": "41771983444115456", "query": "",
                                                 "limit": 0, "nonce": "n1"}))
        .expect("valid");
        assert_eq!(all.guild_id, 41_771_983_444_115_456);
        assert!(all.is_all_members() && all.needs_members_intent());
        assert_eq!(all.max_members(), usize::MAX);
        assert_eq!(all.nonce.as_deref(), Some("n1"));
        assert!(!all.presences);

        let some =
            request_guild_members(&json!({"guild_id": 1, "query": "", "limit": 5})).expect("valid");
        assert!(!some.is_all_members() && some.needs_members_intent());
        assert_eq!(some.max_members(), 5);

        let prefix = request_guild_members(&json!({"guild_id": 1, "query": "us", "limit": 0,
                                                    "presences": true}))
        .expect("valid");
        assert!(!prefix.needs_members_intent() && prefix.presences);
        assert_eq!(prefix.max_members(), 100, "a prefix returns at most 100");

        let one = request_guild_members(&json!({"guild_id": 1, "user_ids": "5"})).expect("valid");
        assert_eq!(one.selector, MemberSelector::UserIds(vec![5]));
        let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let hundred = request_guild_members(
            &json!({"guild_id": 1, "user_ids": ids, "nonce": "x".repeat(33)}),
        )
        .expect("100 ids are allowed");
        assert_eq!(hundred.max_members(), 100);
        assert_eq!(hundred.nonce, None, "a nonce over 32 bytes is ignored");
    }

    #[test]
    fn member_requests_break_their_shape_in_these_ways() {
        let ids: Vec<u64> = (0..101).collect();
        for bad in [
            json!({"query": "", "limit": 0}),
            json!({"guild_id": ["1", "2"], "query": "", "limit": 0}),
            json!({"guild_id": "1"}),
            json!({"guild_id": "1", "query": ""}),
            json!({"guild_id": "1", "query": 5, "limit": 0}),
            json!({"guild_id": "1", "user_ids": ids}),
            json!({"guild_id": "1", "user_ids": ["x"]}),
            json!({"guild_id": "1", "query": "", "limit": 0, "presences": "yes"}),
        ] {
            assert!(request_guild_members(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_about_a_guild_need_it_on_the_sessions_shard() {
        let guild = world::guild_id(3);
        let on = rules::shard_for_guild(guild, 4);
        assert_eq!(guild_on_shard(guild, 10, [on, 4]), Ok(3));
        assert!(guild_on_shard(guild, 10, [(on + 1) % 4, 4]).is_err());
        assert!(
            guild_on_shard(guild, 3, [on, 4]).is_err(),
            "not one of the bot's 3 guilds"
        );
        assert!(guild_on_shard(world::text_channel_id(guild), 10, [on, 4]).is_err());
    }
}
