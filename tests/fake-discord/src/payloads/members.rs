//! The answers to op 8 Request Guild Members (gateway-events.mdx): GUILD_MEMBERS_CHUNK's `d`
//! ("Guild Members Chunk Event Fields": guild member objects, `chunk_index`, `chunk_count`,
//! `not_found`, `presences` when asked for and allowed, `nonce`), and RATE_LIMITED's `d` for an
//! all-members request over its limit ("Rate Limited Fields", with the "Request Guild Member
//! Rate Limit Metadata" as `meta`).

use super::{Bot, id, num, raw, string, write_member};
use crate::members::Selection;
use crate::rules::{Micros, US_PER_MS};
use crate::world::{self, Person};

/// A presence object (gateway-events.mdx "Presence Update Event Fields") of a member.
fn write_presence(buf: &mut Vec<u8>, bot: &Bot, guild: u64, person: Person) {
    let status = world::status(person);
    raw(buf, r#"{"user":{"id":"#);
    id(
        buf,
        match person {
            Person::Bot => bot.id,
            Person::User(n) => world::user_id(n),
        },
    );
    raw(buf, r#"},"guild_id":"#);
    id(buf, guild);
    raw(buf, r#","status":""#);
    raw(buf, status);
    raw(buf, r#"","activities":[],"client_status":{"#);
    if status != "offline" {
        raw(buf, r#""desktop":""#);
        raw(buf, status);
        buf.push(b'"');
    }
    raw(buf, "}}");
}

/// The `d` of every GUILD_MEMBERS_CHUNK answering a request on `guild`, in order. `not_found`
/// rides in the first chunk; `presences` are written when `presences` is set (the caller clears
/// it without the GUILD_PRESENCES intent, as Discord does).
pub fn guild_members_chunks(
    bot: &Bot,
    guild: u64,
    selection: &Selection,
    presences: bool,
    nonce: Option<&str>,
) -> Vec<Vec<u8>> {
    let chunks = selection.chunks();
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, members)| {
            let mut buf = Vec::with_capacity(members.len() * 520 + 200);
            raw(&mut buf, r#"{"guild_id":"#);
            id(&mut buf, guild);
            raw(&mut buf, r#","members":["#);
            for (i, &person) in members.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_member(&mut buf, bot, guild, person);
            }
            raw(&mut buf, r#"],"chunk_index":"#);
            num(&mut buf, index as u64);
            raw(&mut buf, r#","chunk_count":"#);
            num(&mut buf, count as u64);
            raw(&mut buf, r#","not_found":["#);
            if index == 0 {
                for (i, &user) in selection.not_found.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    id(&mut buf, user);
                }
            }
            buf.push(b']');
            if presences {
                raw(&mut buf, r#","presences":["#);
                for (i, &person) in members.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    write_presence(&mut buf, bot, guild, person);
                }
                buf.push(b']');
            }
            if let Some(nonce) = nonce {
                raw(&mut buf, r#","nonce":"#);
                string(&mut buf, nonce);
            }
            buf.push(b'}');
            buf
        })
        .collect()
}

/// RATE_LIMITED's `d` for an op 8 over its limit: `retry_after` in seconds (a float, rounded up
/// to the ms so that a client waiting that long is never early).
pub fn rate_limited(guild: u64, retry_after: Micros, nonce: Option<&str>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    raw(&mut buf, r#"{"opcode":8,"retry_after":"#);
    let total_ms = retry_after.div_ceil(US_PER_MS);
    let (seconds, millis) = (total_ms / 1_000, total_ms % 1_000);
    num(&mut buf, seconds);
    buf.push(b'.');
    raw(&mut buf, &format!("{millis:03}"));
    raw(&mut buf, r#","meta":{"guild_id":"#);
    id(&mut buf, guild);
    if let Some(nonce) = nonce {
        raw(&mut buf, r#","nonce":"#);
        string(&mut buf, nonce);
    }
    raw(&mut buf, "}}");
    buf
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use twilight_model::gateway::event::DispatchEvent;

    use super::super::tests::parse;
    use super::*;
    use crate::commands::{MemberRequest, MemberSelector};
    use crate::members;
    use crate::rules;

    fn bot() -> Bot {
        Bot {
            id: 1_311_000_000_000_000_000,
            username: "fake-bot".into(),
            privileged_intents: rules::PRIVILEGED_INTENTS,
        }
    }

    fn select(index: u32, selector: MemberSelector) -> Selection {
        let request = MemberRequest {
            guild_id: world::guild_id(index),
            selector,
            presences: true,
            nonce: None,
        };
        members::select(index, &request, &bot())
    }

    #[test]
    fn chunks_parse_as_twilights_member_chunks() {
        let index = (0..)
            .find(|&i| world::member_count(i) > 1_000)
            .expect("a big guild");
        let guild = world::guild_id(index);
        let all = select(
            index,
            MemberSelector::Query {
                prefix: String::new(),
                limit: 0,
            },
        );
        let chunks = guild_members_chunks(&bot(), guild, &all, true, Some("n-1"));
        assert!(chunks.len() >= 2);
        let mut members = 0;
        for (i, d) in chunks.iter().enumerate() {
            let DispatchEvent::MemberChunk(chunk) = parse("GUILD_MEMBERS_CHUNK", d) else {
                panic!("not GUILD_MEMBERS_CHUNK");
            };
            assert_eq!(chunk.guild_id.get(), guild);
            assert_eq!(
                (chunk.chunk_index as usize, chunk.chunk_count as usize),
                (i, chunks.len())
            );
            assert_eq!(chunk.nonce.as_deref(), Some("n-1"));
            assert_eq!(chunk.presences.len(), chunk.members.len());
            members += chunk.members.len();
        }
        assert_eq!(members as u32, world::member_count(index));
    }

    #[test]
    fn not_found_ids_and_no_presences_unless_asked() {
        let stranger = world::user_id(world::USERS - 1);
        let selection = select(
            0,
            MemberSelector::UserIds(vec![world::user_id(0), stranger]),
        );
        let chunks = guild_members_chunks(&bot(), world::guild_id(0), &selection, false, None);
        assert_eq!(chunks.len(), 1);
        let DispatchEvent::MemberChunk(chunk) = parse("GUILD_MEMBERS_CHUNK", &chunks[0]) else {
            panic!("not GUILD_MEMBERS_CHUNK");
        };
        assert_eq!(chunk.members.len(), 1);
        assert_eq!(chunk.members[0].user.name, "user0");
        assert_eq!(
            chunk
                .not_found
                .iter()
                .map(|id| id.get())
                .collect::<Vec<_>>(),
            vec![stranger]
        );
        let d: Value = serde_json::from_slice(&chunks[0]).expect("JSON");
        assert!(d.get("presences").is_none() && d.get("nonce").is_none());
    }

    #[test]
    fn rate_limited_has_the_documented_fields() {
        let d: Value =
            serde_json::from_slice(&rate_limited(42, 12_345_678, Some("n"))).expect("JSON");
        assert_eq!(
            d,
            json!({"opcode": 8, "retry_after": 12.346, "meta": {"guild_id": "42", "nonce": "n"}})
        );
        let d: Value = serde_json::from_slice(&rate_limited(42, 4_001, None)).expect("JSON");
        assert_eq!(
            d,
            json!({"opcode": 8, "retry_after": 0.005, "meta": {"guild_id": "42"}})
        );
    }
}
