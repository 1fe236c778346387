//! MESSAGE_CREATE's `d` (discord-api-docs `resources/message.mdx`, "Message Object"), the
//! synthetic text the load fills it with, and the content length that gives a wanted size.

use std::sync::OnceLock;

use rand::{Rng, RngExt, SeedableRng, rngs::SmallRng};

use super::{Bot, JOINED_AT, id, raw, string, write_person};
use crate::world::{self, Person};

/// A message the world created, before serialization.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub id: u64,
    pub channel_id: u64,
    /// `None`: a DM.
    pub guild_id: Option<u64>,
    pub author: Person,
    pub content: &'a str,
    pub timestamp: &'a str,
    /// A reply: the message it answers (`message_reference`, type 19).
    pub reply_to: Option<u64>,
    /// The create's `nonce` as JSON (a string or an integer), echoed in MESSAGE_CREATE.
    pub nonce: Option<&'a str>,
}

/// MESSAGE_CREATE's `d`. Without the MESSAGE_CONTENT intent `content` arrives empty, as
/// Discord sends it (message.mdx, note \[2\]), so the caller serializes both variants when needed.
pub fn write_message_create(buf: &mut Vec<u8>, bot: &Bot, msg: &Message<'_>, with_content: bool) {
    raw(buf, r#"{"type":"#);
    raw(buf, if msg.reply_to.is_some() { "19" } else { "0" });
    raw(buf, r#","tts":false,"timestamp":""#);
    raw(buf, msg.timestamp);
    raw(
        buf,
        r#"","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"#,
    );
    if let Some(guild) = msg.guild_id {
        raw(buf, r#""member":{"roles":["#);
        if msg.author == Person::Bot {
            id(buf, world::bot_role_id(guild));
        }
        raw(
            buf,
            r#"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":""#,
        );
        raw(buf, JOINED_AT);
        raw(
            buf,
            r#"","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null},"#,
        );
    }
    raw(buf, r#""id":"#);
    id(buf, msg.id);
    raw(
        buf,
        r#","flags":0,"embeds":[],"edited_timestamp":null,"content":"#,
    );
    string(buf, if with_content { msg.content } else { "" });
    raw(buf, r#","components":[],"channel_id":"#);
    id(buf, msg.channel_id);
    raw(buf, r#","author":"#);
    write_person(buf, bot, msg.author);
    raw(buf, r#","attachments":[]"#);
    if let Some(nonce) = msg.nonce {
        raw(buf, r#","nonce":"#);
        raw(buf, nonce);
    }
    if let Some(reply_to) = msg.reply_to {
        raw(buf, r#","message_reference":{"type":0,"message_id":"#);
        id(buf, reply_to);
        raw(buf, r#","channel_id":"#);
        id(buf, msg.channel_id);
        if let Some(guild) = msg.guild_id {
            raw(buf, r#","guild_id":"#);
            id(buf, guild);
        }
        raw(buf, r#"},"referenced_message":null"#);
    }
    match msg.guild_id {
        Some(guild) => {
            raw(buf, r#","guild_id":"#);
            id(buf, guild);
            raw(buf, r#","channel_type":0}"#);
        }
        None => raw(buf, r#","channel_type":1}"#),
    }
}

/// Bytes of a MESSAGE_CREATE `d` besides its content (measured on a guild message).
const MESSAGE_OVERHEAD: usize = 780;
/// Discord's limit on `content`.
const MAX_CONTENT: usize = 2_000;

/// Content length that makes a MESSAGE_CREATE `d` about `payload_bytes` long.
pub fn content_len_for(payload_bytes: usize) -> usize {
    payload_bytes
        .saturating_sub(MESSAGE_OVERHEAD)
        .min(MAX_CONTENT)
}

/// A slice of random English-like text of `len` bytes (ASCII letters and spaces, so no JSON
/// escaping), starting at a random place so that consecutive messages differ as real chat does
/// and zlib-stream cannot compress them to nothing.
pub fn random_text(rng: &mut impl Rng, len: usize) -> &'static str {
    static BLOB: OnceLock<String> = OnceLock::new();
    let blob = BLOB.get_or_init(|| {
        const WORDS: &[&str] = &[
            "the",
            "shard",
            "guild",
            "gateway",
            "hello",
            "world",
            "message",
            "bot",
            "please",
            "thanks",
            "yes",
            "no",
            "maybe",
            "later",
            "today",
            "tomorrow",
            "server",
            "channel",
            "voice",
            "game",
            "play",
            "music",
            "queue",
            "skip",
            "ban",
            "kick",
            "role",
            "emoji",
            "react",
            "ping",
            "pong",
            "help",
            "command",
            "settings",
            "prefix",
            "level",
            "rank",
            "points",
            "daily",
            "reward",
            "event",
            "raid",
            "boss",
            "loot",
            "trade",
            "market",
            "price",
            "moderator",
            "admin",
            "rules",
            "welcome",
            "goodbye",
            "meme",
            "cat",
            "dog",
            "lol",
            "nice",
            "cool",
            "awesome",
            "what",
            "when",
            "where",
            "why",
            "how",
            "who",
        ];
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let mut blob = String::with_capacity(1 << 20);
        while blob.len() < (1 << 20) - 16 {
            blob.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            blob.push(' ');
        }
        blob
    });
    let len = len.min(blob.len());
    let start = rng.random_range(0..=blob.len() - len);
    &blob[start..start + len]
}
