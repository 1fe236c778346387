//! op 8's answer (gateway-events.mdx, "Request Guild Members", "Guild Members Chunk"): which of
//! a guild's generated members (`world::members`) a request selects, which requested users are
//! not members (`not_found`), and the split into chunks of up to 1,000 members. Pure.

use crate::commands::{MemberRequest, MemberSelector};
use crate::payloads::Bot;
use crate::world::{self, Person};

/// Most members in one GUILD_MEMBERS_CHUNK ("up to 1000 members per chunk").
pub const CHUNK_MEMBERS: usize = 1_000;

/// What a request selects from a guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// In the guild's member order (or the order of `user_ids`).
    pub members: Vec<Person>,
    /// Requested user ids that are not members of the guild.
    pub not_found: Vec<u64>,
}

impl Selection {
    /// The members of each chunk: at least one chunk, since an answer with no member is one
    /// empty chunk (clients wait for `chunk_index == chunk_count - 1`).
    pub fn chunks(&self) -> Vec<&[Person]> {
        if self.members.is_empty() {
            return vec![&[]];
        }
        self.members.chunks(CHUNK_MEMBERS).collect()
    }
}

/// Whether `person`'s username starts with `prefix_lower` (lowercase), as Discord matches a
/// query ("string that username starts with"), ignoring case.
fn username_starts_with(person: Person, bot: &Bot, prefix_lower: &str) -> bool {
    let name = match person {
        Person::Bot => bot.username.to_lowercase(),
        Person::User(n) => world::username(n),
    };
    name.starts_with(prefix_lower)
}

/// The members of guild `index` that `request` selects.
pub fn select(index: u32, request: &MemberRequest, bot: &Bot) -> Selection {
    match &request.selector {
        MemberSelector::Query { prefix, .. } => {
            let prefix = prefix.to_lowercase();
            Selection {
                members: world::members(index)
                    .filter(|&p| username_starts_with(p, bot, &prefix))
                    .take(request.max_members())
                    .collect(),
                not_found: Vec::new(),
            }
        }
        MemberSelector::UserIds(ids) => {
            let mut selection = Selection {
                members: Vec::with_capacity(ids.len()),
                not_found: Vec::new(),
            };
            for (i, &id) in ids.iter().enumerate() {
                if ids[..i].contains(&id) {
                    continue;
                }
                let member = if id == bot.id {
                    Some(Person::Bot)
                } else {
                    world::user_index(id)
                        .filter(|&n| world::is_member(index, n))
                        .map(Person::User)
                };
                match member {
                    Some(person) => selection.members.push(person),
                    None => selection.not_found.push(id),
                }
            }
            selection
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules;

    fn bot() -> Bot {
        Bot {
            id: 1_311_000_000_000_000_000,
            username: "Fake-Bot".into(),
            privileged_intents: rules::PRIVILEGED_INTENTS,
        }
    }

    fn request(selector: MemberSelector) -> MemberRequest {
        MemberRequest {
            guild_id: world::guild_id(0),
            selector,
            presences: false,
            nonce: None,
        }
    }

    fn query(prefix: &str, limit: u32) -> MemberRequest {
        request(MemberSelector::Query {
            prefix: prefix.into(),
            limit,
        })
    }

    /// A guild with more than 1,000 members.
    fn big_guild() -> u32 {
        (0..)
            .find(|&i| world::member_count(i) > 2_500)
            .expect("one exists")
    }

    #[test]
    fn all_members_come_in_chunks_of_a_thousand() {
        let index = big_guild();
        let count = world::member_count(index) as usize;
        let all = select(index, &query("", 0), &bot());
        assert_eq!(all.members.len(), count);
        assert_eq!(all.members, world::members(index).collect::<Vec<_>>());
        let chunks = all.chunks();
        assert_eq!(chunks.len(), count.div_ceil(CHUNK_MEMBERS));
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c.len() == CHUNK_MEMBERS)
        );
        assert_eq!(select(index, &query("", 7), &bot()).members.len(), 7);
    }

    #[test]
    fn a_query_matches_username_prefixes_ignoring_case_up_to_a_hundred() {
        let index = big_guild();
        let fake = select(index, &query("FAKE", 0), &bot());
        assert_eq!(fake.members, vec![Person::Bot]);
        let users = select(index, &query("User", 0), &bot());
        assert_eq!(users.members.len(), 100);
        assert!(users.members.iter().all(|p| matches!(p, Person::User(_))));
        let owner = world::username(u64::from(index));
        let exact = select(index, &query(&owner, 3), &bot());
        assert_eq!(exact.members.first(), Some(&Person::User(u64::from(index))));
        assert!(exact.members.len() <= 3);
        let none = select(index, &query("nobody", 0), &bot());
        assert!(none.members.is_empty());
        assert_eq!(none.chunks(), vec![&[] as &[Person]], "one empty chunk");
    }

    #[test]
    fn user_ids_find_members_and_list_the_others() {
        let index = 0;
        let owner = world::user_id(0);
        let stranger = world::user_id(world::USERS - 1);
        assert!(!world::is_member(index, world::USERS - 1));
        let selection = select(
            index,
            &request(MemberSelector::UserIds(vec![
                owner,
                bot().id,
                stranger,
                owner,
                42,
            ])),
            &bot(),
        );
        assert_eq!(selection.members, vec![Person::User(0), Person::Bot]);
        assert_eq!(selection.not_found, vec![stranger, 42]);
    }
}
