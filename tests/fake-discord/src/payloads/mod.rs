//! Gateway payloads as Discord's API reference documents them, written straight into byte
//! buffers: READY, GUILD_CREATE (a whole guild with roles, channels and the bot's member),
//! MESSAGE_CREATE (a whole message with author and member), and the small opcodes; the answers
//! to op 8 (GUILD_MEMBERS_CHUNK, RATE_LIMITED) are in `members.rs`.
//!
//! Sources: discord-api-docs `developers/events/gateway-events.mdx` (Ready, Guild Create,
//! Message Create extra fields), `developers/resources/{guild,message,user,channel}.mdx`,
//! `developers/topics/permissions.mdx` (Role, with `colors`). Typed clients refuse objects that
//! lack a documented field, so every non-optional field is written; `tests` parse each payload
//! with twilight-model to prove it.
//!
//! Writing by hand instead of through `serde_json::Value` keeps the hot path (one MESSAGE_CREATE
//! `d` serialized once and shared by every session that receives it) free of intermediate trees.

mod members;
mod messages;

use std::io::Write as _;

pub use self::members::{guild_members_chunks, rate_limited};
pub use self::messages::{Message, content_len_for, random_text, write_message_create};
use crate::rules::{self, Micros};
use crate::world::{self, Person};

/// The bot as the gateway describes it.
#[derive(Debug, Clone)]
pub struct Bot {
    pub id: u64,
    pub username: String,
    /// Privileged intents enabled for the bot (mirrored in `application.flags`).
    pub privileged_intents: u64,
}

fn raw(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
}

fn num(buf: &mut Vec<u8>, n: u64) {
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{n}");
}

/// A snowflake, as Discord writes them: a JSON string.
fn id(buf: &mut Vec<u8>, n: u64) {
    let _ = write!(buf, "\"{n}\"");
}

/// A JSON string with escaping.
fn string(buf: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// An ISO 8601 timestamp as Discord writes it: `2017-07-11T17:27:07.299000+00:00`. The date
/// and time of day are formatted once per second per thread (messages are stamped at high rates).
pub fn timestamp(unix_us: Micros) -> String {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((-1, String::new())) };
    }
    let secs = (unix_us / 1_000_000) as i64;
    SECOND.with_borrow_mut(|(cached, date)| {
        if *cached != secs {
            *date = jiff::Timestamp::from_second(secs)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_else(|_| "1970-01-01T00:00:00".to_owned());
            *cached = secs;
        }
        let mut out = String::with_capacity(32);
        out.push_str(date);
        let _ =
            std::fmt::Write::write_fmt(&mut out, format_args!(".{:06}+00:00", unix_us % 1_000_000));
        out
    })
}

/// When the bot joined every guild (fixed: the guilds exist before the fake starts).
const JOINED_AT: &str = "2024-01-01T00:00:00.000000+00:00";

/// `{"op":10,...}` Hello.
pub fn hello(heartbeat_interval_ms: u64) -> Vec<u8> {
    format!(r#"{{"t":null,"s":null,"op":10,"d":{{"heartbeat_interval":{heartbeat_interval_ms},"_trace":["[\"fake-discord\"]"]}}}}"#)
        .into_bytes()
}

/// op 11 Heartbeat ACK.
pub const HEARTBEAT_ACK: &[u8] = br#"{"t":null,"s":null,"op":11,"d":null}"#;
/// op 1 Heartbeat (a request: the client must heartbeat at once).
pub const HEARTBEAT_REQUEST: &[u8] = br#"{"t":null,"s":null,"op":1,"d":null}"#;
/// op 7 Reconnect.
pub const RECONNECT: &[u8] = br#"{"t":null,"s":null,"op":7,"d":null}"#;

/// op 9 Invalid Session.
pub fn invalid_session(resumable: bool) -> &'static [u8] {
    if resumable {
        br#"{"t":null,"s":null,"op":9,"d":true}"#
    } else {
        br#"{"t":null,"s":null,"op":9,"d":false}"#
    }
}

/// A dispatch frame `{"t":..,"s":..,"op":0,"d":..}` around an already serialized `d`.
pub fn write_dispatch(buf: &mut Vec<u8>, event: &str, seq: u64, d: &[u8]) {
    buf.reserve(d.len() + event.len() + 40);
    write_dispatch_prefix(buf, event, seq);
    buf.extend_from_slice(d);
    buf.push(b'}');
}

/// What comes before `d` in a dispatch frame (the frame ends with `}` after `d`).
pub fn write_dispatch_prefix(buf: &mut Vec<u8>, event: &str, seq: u64) {
    raw(buf, "{\"t\":\"");
    raw(buf, event);
    raw(buf, "\",\"s\":");
    num(buf, seq);
    raw(buf, ",\"op\":0,\"d\":");
}

/// RESUMED's `d`.
pub const RESUMED: &[u8] = br#"{"_trace":["[\"fake-discord\"]"]}"#;

/// The bot's user object (READY's `user`, `GET /users/@me`, members and authors).
pub fn write_bot_user(buf: &mut Vec<u8>, bot: &Bot) {
    raw(buf, r#"{"verified":true,"username":"#);
    string(buf, &bot.username);
    raw(buf, r#","mfa_enabled":false,"id":"#);
    id(buf, bot.id);
    raw(
        buf,
        r#","global_name":null,"flags":0,"email":null,"discriminator":"0","bot":true,"avatar":null,"public_flags":0,"banner":null,"accent_color":null,"avatar_decoration_data":null,"collectibles":null,"primary_guild":null}"#,
    );
}

/// The bot user as JSON (REST `GET /users/@me`).
pub fn bot_user(bot: &Bot) -> Vec<u8> {
    let mut buf = Vec::with_capacity(400);
    write_bot_user(&mut buf, bot);
    buf
}

/// `application.flags`: the gateway intent flags that match the enabled privileged intents
/// (GATEWAY_PRESENCE 1<<12, GATEWAY_GUILD_MEMBERS 1<<14, GATEWAY_MESSAGE_CONTENT 1<<18).
fn application_flags(privileged: u64) -> u64 {
    let mut flags = 0;
    if privileged & (1 << 8) != 0 {
        flags |= 1 << 12;
    }
    if privileged & (1 << 1) != 0 {
        flags |= 1 << 14;
    }
    if privileged & rules::INTENT_MESSAGE_CONTENT != 0 {
        flags |= 1 << 18;
    }
    flags
}

/// READY's `d`: the bot, its guilds on this shard as unavailable, the session, and the resume
/// URL.
pub fn ready(
    bot: &Bot,
    session_id: &str,
    resume_gateway_url: &str,
    shard: [u32; 2],
    guilds: impl Iterator<Item = u32>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1_024);
    raw(&mut buf, r#"{"v":10,"user_settings":{},"user":"#);
    write_bot_user(&mut buf, bot);
    raw(&mut buf, r#","session_type":"normal","session_id":"#);
    string(&mut buf, session_id);
    raw(&mut buf, r#","resume_gateway_url":"#);
    string(&mut buf, resume_gateway_url);
    raw(
        &mut buf,
        r#","relationships":[],"private_channels":[],"presences":[],"guilds":["#,
    );
    for (i, index) in guilds.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        raw(&mut buf, r#"{"unavailable":true,"id":"#);
        id(&mut buf, world::guild_id(index));
        buf.push(b'}');
    }
    raw(
        &mut buf,
        r#"],"guild_join_requests":[],"geo_ordered_rtc_regions":["fake"],"auth":{},"application":{"id":"#,
    );
    id(&mut buf, bot.id);
    raw(&mut buf, r#","flags":"#);
    num(&mut buf, application_flags(bot.privileged_intents));
    raw(&mut buf, r#"},"shard":["#);
    num(&mut buf, u64::from(shard[0]));
    buf.push(b',');
    num(&mut buf, u64::from(shard[1]));
    raw(&mut buf, r#"],"_trace":["[\"fake-discord\"]"]}"#);
    buf
}

/// A role; `bot` makes it the bot's managed role, tagged with its id.
fn write_role(
    buf: &mut Vec<u8>,
    role_id: u64,
    name: &str,
    position: u32,
    permissions: &str,
    bot: Option<u64>,
) {
    raw(buf, r#"{"id":"#);
    id(buf, role_id);
    raw(buf, r#","name":"#);
    string(buf, name);
    raw(
        buf,
        r#","color":0,"colors":{"primary_color":0,"secondary_color":null,"tertiary_color":null},"hoist":false,"icon":null,"unicode_emoji":null,"position":"#,
    );
    num(buf, u64::from(position));
    raw(buf, r#","permissions":""#);
    raw(buf, permissions);
    raw(
        buf,
        r#"","mentionable":false,"flags":0,"description":null,"managed":"#,
    );
    match bot {
        Some(bot_id) => {
            raw(buf, r#"true,"tags":{"bot_id":"#);
            id(buf, bot_id);
            raw(buf, "}}");
        }
        None => raw(buf, "false}"),
    }
}

/// GUILD_CREATE's `d` for guild `index`: a whole guild object plus the Guild Create extra
/// fields, with the bot as the one member (as without the GUILD_PRESENCES intent).
pub fn write_guild_create(buf: &mut Vec<u8>, bot: &Bot, index: u32, large_threshold: u32) {
    let guild = world::guild_id(index);
    let text = world::text_channel_id(guild);
    let members = world::member_count(index);
    raw(buf, r#"{"id":"#);
    id(buf, guild);
    raw(buf, r#","name":"Guild "#);
    num(buf, u64::from(index));
    raw(
        buf,
        r#"","icon":null,"splash":null,"discovery_splash":null,"banner":null,"description":null,"owner_id":"#,
    );
    id(buf, world::user_id(u64::from(index)));
    raw(
        buf,
        r#","afk_channel_id":null,"afk_timeout":300,"widget_enabled":false,"widget_channel_id":null,"verification_level":1,"default_message_notifications":1,"explicit_content_filter":2,"roles":["#,
    );
    write_role(buf, guild, "@everyone", 0, "2248473465835073", None);
    buf.push(b',');
    write_role(
        buf,
        world::bot_role_id(guild),
        &bot.username,
        1,
        "68608",
        Some(bot.id),
    );
    raw(
        buf,
        r#"],"emojis":[],"features":[],"mfa_level":0,"application_id":null,"system_channel_id":"#,
    );
    id(buf, text);
    raw(
        buf,
        r#","system_channel_flags":0,"rules_channel_id":null,"max_presences":null,"max_members":500000,"vanity_url_code":null,"premium_tier":0,"premium_subscription_count":0,"preferred_locale":"en-US","public_updates_channel_id":null,"max_video_channel_users":25,"max_stage_video_channel_users":50,"nsfw_level":0,"nsfw":false,"stickers":[],"premium_progress_bar_enabled":false,"safety_alerts_channel_id":null,"incidents_data":null,"joined_at":""#,
    );
    raw(buf, JOINED_AT);
    raw(buf, r#"","large":"#);
    raw(
        buf,
        if members > large_threshold {
            "true"
        } else {
            "false"
        },
    );
    raw(buf, r#","unavailable":false,"member_count":"#);
    num(buf, u64::from(members));
    raw(buf, r#","voice_states":[],"members":["#);
    write_member(buf, bot, guild, Person::Bot);
    raw(buf, r#"],"channels":[{"id":"#);
    id(buf, text);
    raw(
        buf,
        r#","type":0,"name":"general","position":0,"permission_overwrites":[],"parent_id":null,"topic":null,"nsfw":false,"last_message_id":null,"rate_limit_per_user":0,"flags":0},{"id":"#,
    );
    id(buf, world::voice_channel_id(guild));
    raw(
        buf,
        r#","type":2,"name":"General","position":0,"permission_overwrites":[],"parent_id":null,"nsfw":false,"bitrate":64000,"user_limit":0,"rtc_region":null,"rate_limit_per_user":0,"flags":0}],"threads":[],"presences":[],"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[],"embedded_activities":[],"lazy":true}"#,
    );
}

/// Synthetic user `n`'s user object (`world::user_id(n)`, `world::username(n)`).
fn write_user(buf: &mut Vec<u8>, n: u64) {
    raw(buf, r#"{"username":""#);
    raw(buf, world::USERNAME_PREFIX);
    num(buf, n % world::USERS);
    raw(buf, r#"","public_flags":0,"id":"#);
    id(buf, world::user_id(n));
    raw(
        buf,
        r#","global_name":null,"discriminator":"0","clan":null,"avatar_decoration_data":null,"avatar":null,"primary_guild":null,"collectibles":null}"#,
    );
}

/// The user object of someone in the world.
fn write_person(buf: &mut Vec<u8>, bot: &Bot, person: Person) {
    match person {
        Person::Bot => write_bot_user(buf, bot),
        Person::User(n) => write_user(buf, n),
    }
}

/// A guild member object (guild.mdx "Guild Member Object"): the bot, with its managed role, or
/// a synthetic user with none.
fn write_member(buf: &mut Vec<u8>, bot: &Bot, guild: u64, person: Person) {
    raw(buf, r#"{"user":"#);
    write_person(buf, bot, person);
    raw(buf, r#","nick":null,"avatar":null,"banner":null,"roles":["#);
    if person == Person::Bot {
        id(buf, world::bot_role_id(guild));
    }
    raw(buf, r#"],"joined_at":""#);
    raw(buf, JOINED_AT);
    raw(
        buf,
        r#"","premium_since":null,"deaf":false,"mute":false,"flags":0,"pending":false,"communication_disabled_until":null}"#,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};
    use twilight_model::gateway::event::{DispatchEvent, GatewayEvent, GatewayEventDeserializer};

    fn bot() -> Bot {
        Bot {
            id: 1_311_000_000_000_000_000,
            username: "fake \"bot\"".into(),
            privileged_intents: rules::PRIVILEGED_INTENTS,
        }
    }

    /// Parses a dispatch with twilight-model, the strictest typed client we know.
    pub(super) fn parse(event: &str, d: &[u8]) -> DispatchEvent {
        let mut frame = Vec::new();
        write_dispatch(&mut frame, event, 7, d);
        let json = std::str::from_utf8(&frame).expect("utf-8");
        let deserializer = GatewayEventDeserializer::from_json(json).expect("frame header");
        let mut json_de = serde_json::Deserializer::from_str(json);
        match serde::de::DeserializeSeed::deserialize(deserializer, &mut json_de) {
            Ok(GatewayEvent::Dispatch(7, event)) => event,
            other => panic!("{event}: {other:?}\n{json}"),
        }
    }

    #[test]
    fn ready_parses_as_twilights_ready() {
        let guilds = world::guilds_on_shard(20, 1, 4);
        let d = ready(&bot(), "abc", "ws://fake/resume", [1, 4], guilds);
        let DispatchEvent::Ready(ready) = parse("READY", &d) else {
            panic!("not READY");
        };
        assert_eq!(ready.session_id, "abc");
        assert_eq!(ready.resume_gateway_url, "ws://fake/resume");
        assert_eq!(ready.guilds.len(), 5);
        assert_eq!(ready.user.id.get(), bot().id);
        assert_eq!(ready.application.id.get(), bot().id);
        assert_eq!(ready.shard.map(|s| (s.number(), s.total())), Some((1, 4)));
    }

    #[test]
    fn guild_create_parses_as_a_whole_guild() {
        let mut d = Vec::new();
        write_guild_create(&mut d, &bot(), 3, 50);
        let DispatchEvent::GuildCreate(create) = parse("GUILD_CREATE", &d) else {
            panic!("not GUILD_CREATE");
        };
        let twilight_model::gateway::payload::incoming::GuildCreate::Available(guild) = *create
        else {
            panic!("guild unavailable");
        };
        assert_eq!(guild.id.get(), world::guild_id(3));
        assert_eq!(guild.roles.len(), 2);
        assert_eq!(guild.channels.len(), 2);
        assert_eq!(guild.members.len(), 1);
        assert_eq!(guild.member_count, Some(u64::from(world::member_count(3))));
    }

    #[test]
    fn message_create_parses_with_and_without_content() {
        let guild = world::guild_id(9);
        let msg = Message {
            id: 1_400_000_000_000_000_000,
            channel_id: world::text_channel_id(guild),
            guild_id: Some(guild),
            author: Person::User(12),
            content: "hello \"there\"",
            timestamp: &timestamp(1_764_000_000_123_456),
            reply_to: None,
            nonce: None,
        };
        for with_content in [true, false] {
            let mut d = Vec::new();
            write_message_create(&mut d, &bot(), &msg, with_content);
            let DispatchEvent::MessageCreate(created) = parse("MESSAGE_CREATE", &d) else {
                panic!("not MESSAGE_CREATE");
            };
            assert_eq!(created.id.get(), msg.id);
            assert_eq!(created.guild_id.map(|g| g.get()), Some(guild));
            let expected = if with_content { msg.content } else { "" };
            assert_eq!(created.content, expected);
        }
        let reply = Message {
            author: Person::Bot,
            reply_to: Some(msg.id),
            guild_id: None,
            nonce: Some(r#""n-1""#),
            ..msg.clone()
        };
        let mut d = Vec::new();
        write_message_create(&mut d, &bot(), &reply, true);
        let DispatchEvent::MessageCreate(created) = parse("MESSAGE_CREATE", &d) else {
            panic!("not MESSAGE_CREATE");
        };
        assert!(created.author.bot);
        assert_eq!(
            created
                .reference
                .as_ref()
                .and_then(|r| r.message_id)
                .map(|m| m.get()),
            Some(msg.id)
        );
    }

    #[test]
    fn timestamps_have_discords_shape() {
        assert_eq!(
            timestamp(1_499_793_627_299_000),
            "2017-07-11T17:20:27.299000+00:00"
        );
    }

    #[test]
    fn synthetic_messages_come_near_the_requested_size() {
        let mut rng = SmallRng::seed_from_u64(1);
        let guild = world::guild_id(1);
        for size in [1_024usize, 2_048] {
            let content = random_text(&mut rng, content_len_for(size));
            let msg = Message {
                id: 1_400_000_000_000_000_000,
                channel_id: world::text_channel_id(guild),
                guild_id: Some(guild),
                author: Person::User(1),
                content,
                timestamp: &timestamp(1_764_000_000_000_000),
                reply_to: None,
                nonce: None,
            };
            let mut d = Vec::new();
            write_message_create(&mut d, &bot(), &msg, true);
            let ratio = d.len() as f64 / size as f64;
            assert!((0.9..1.1).contains(&ratio), "{size}: {}", d.len());
        }
    }

    #[test]
    fn small_opcodes_are_valid_json() {
        for frame in [
            hello(41_250),
            HEARTBEAT_ACK.to_vec(),
            HEARTBEAT_REQUEST.to_vec(),
            RECONNECT.to_vec(),
            invalid_session(true).to_vec(),
            invalid_session(false).to_vec(),
            bot_user(&bot()),
        ] {
            serde_json::from_slice::<serde_json::Value>(&frame).expect("valid JSON");
        }
    }
}
