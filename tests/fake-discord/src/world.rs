//! The bot's world: which guilds exist, their ids, channels and members, the synthetic users,
//! and which shard of any layout receives each guild. Ids are pure functions of an index, so any number of guilds costs
//! no memory and any `num_shards` can list its guilds in O(guilds on that shard).
//!
//! Guild `i` has the snowflake `(GUILD_BASE + i) << 22`: consecutive timestamps, so the sharding
//! formula `(guild_id >> 22) % num_shards` spreads guilds evenly (within one) over every layout.
//! Objects of a guild take the same timestamp with a kind in the low bits: text channel `| 1`,
//! voice channel `| 2`, the bot's managed role `| 3`; the @everyone role is the guild id itself,
//! as on Discord.
//!
//! Guild `i` has `member_count(i)` members: the bot, then synthetic users `i`, `i + 1`, ... (modulo
//! `USERS`), so user `i` (its owner) is a member, and every guild's list is fixed and costs
//! nothing to store.

/// Milliseconds since the Discord epoch (2015-01-01) of the first guild: 2018-01-01.
const GUILD_BASE: u64 = 94_694_400_000;
/// Milliseconds since the Discord epoch of the first synthetic user: 2016-01-01.
const USER_BASE: u64 = 31_536_000_000;
/// Synthetic users that author messages and own guilds.
pub const USERS: u64 = 10_000;

const KIND_MASK: u64 = (1 << 22) - 1;
const TEXT_CHANNEL: u64 = 1;
const VOICE_CHANNEL: u64 = 2;
const BOT_ROLE: u64 = 3;
const DM_CHANNEL: u64 = 5;

/// The snowflake of guild `index`.
pub fn guild_id(index: u32) -> u64 {
    (GUILD_BASE + u64::from(index)) << 22
}

/// The index of a guild id, if it is one of the first `guilds` guilds.
pub fn guild_index(guild_id: u64, guilds: u32) -> Option<u32> {
    if guild_id & KIND_MASK != 0 {
        return None;
    }
    let index = (guild_id >> 22).checked_sub(GUILD_BASE)?;
    (index < u64::from(guilds)).then_some(index as u32)
}

/// The guild's text channel, where synthetic messages are posted.
pub fn text_channel_id(guild_id: u64) -> u64 {
    guild_id | TEXT_CHANNEL
}

/// The guild's voice channel.
pub fn voice_channel_id(guild_id: u64) -> u64 {
    guild_id | VOICE_CHANNEL
}

/// The bot's managed role in the guild.
pub fn bot_role_id(guild_id: u64) -> u64 {
    guild_id | BOT_ROLE
}

/// The guild a channel id belongs to, if it is a channel of one of the first `guilds` guilds.
pub fn channel_guild(channel_id: u64, guilds: u32) -> Option<u64> {
    let kind = channel_id & KIND_MASK;
    if kind != TEXT_CHANNEL && kind != VOICE_CHANNEL {
        return None;
    }
    let guild = channel_id & !KIND_MASK;
    guild_index(guild, guilds).map(|_| guild)
}

/// The DM channel between the bot and synthetic user `index`.
pub fn dm_channel_id(index: u64) -> u64 {
    user_id(index) | DM_CHANNEL
}

/// A channel the bot can post in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A channel of this guild.
    Guild(u64),
    /// A DM with a synthetic user.
    Dm,
}

/// Which channel an id names, if any.
pub fn resolve_channel(channel_id: u64, guilds: u32) -> Option<Channel> {
    if channel_id & KIND_MASK == DM_CHANNEL {
        let ts = (channel_id >> 22).checked_sub(USER_BASE)?;
        return (ts < USERS).then_some(Channel::Dm);
    }
    channel_guild(channel_id, guilds).map(Channel::Guild)
}

/// Someone in the world: the bot, or synthetic user `n` (`user_id(n)`). Both write messages and
/// are guild members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Person {
    /// The bot itself (its replies; its member in every guild).
    Bot,
    /// Synthetic user `n % USERS`.
    User(u64),
}

/// Synthetic user `index % USERS`.
pub fn user_id(index: u64) -> u64 {
    (USER_BASE + index % USERS) << 22
}

/// The synthetic user an id names, if any (`user_id`'s inverse).
pub fn user_index(user_id: u64) -> Option<u64> {
    if user_id & KIND_MASK != 0 {
        return None;
    }
    let index = (user_id >> 22).checked_sub(USER_BASE)?;
    (index < USERS).then_some(index)
}

/// What synthetic usernames start with: user `n` is `user<n % USERS>`.
pub const USERNAME_PREFIX: &str = "user";

/// Synthetic user `n`'s username.
pub fn username(n: u64) -> String {
    format!("{USERNAME_PREFIX}{}", n % USERS)
}

/// Someone's presence status, fixed per person: the bot is online; synthetic users are online,
/// idle, dnd or offline in turn.
pub fn status(person: Person) -> &'static str {
    match person {
        Person::Bot => "online",
        Person::User(n) => ["online", "idle", "dnd", "offline"][(n % 4) as usize],
    }
}

/// Member count of a guild: a spread from 2 to about 5,000, fixed per guild (less than `USERS`,
/// so a guild's synthetic members are distinct users).
pub fn member_count(index: u32) -> u32 {
    let x = u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    2 + (x % 5_000) as u32
}

/// Member `position` of guild `index` (`0 <= position < member_count(index)`): the bot first,
/// then users `index`, `index + 1`, ...
pub fn member_at(index: u32, position: u32) -> Person {
    match position {
        0 => Person::Bot,
        p => Person::User((u64::from(index) + u64::from(p) - 1) % USERS),
    }
}

/// The members of guild `index`, in their fixed order.
pub fn members(index: u32) -> impl Iterator<Item = Person> {
    (0..member_count(index)).map(move |p| member_at(index, p))
}

/// Whether synthetic user `n` is a member of guild `index`.
pub fn is_member(index: u32, n: u64) -> bool {
    let position = (n % USERS + USERS - u64::from(index) % USERS) % USERS + 1;
    position < u64::from(member_count(index))
}

/// The first guild index routed to `shard` of `num_shards`, then every `num_shards`-th.
fn first_index_on(shard: u32, num_shards: u32) -> u64 {
    let n = u64::from(num_shards.max(1));
    (u64::from(shard) + n - GUILD_BASE % n) % n
}

/// How many of the first `guilds` guilds `[shard, num_shards]` receives.
pub fn guild_count_on_shard(guilds: u32, shard: u32, num_shards: u32) -> u32 {
    let first = first_index_on(shard, num_shards);
    let total = u64::from(guilds);
    if first >= total {
        0
    } else {
        ((total - 1 - first) / u64::from(num_shards.max(1)) + 1) as u32
    }
}

/// The indices of the guilds `[shard, num_shards]` receives, in id order.
pub fn guilds_on_shard(guilds: u32, shard: u32, num_shards: u32) -> impl Iterator<Item = u32> {
    let first = first_index_on(shard, num_shards);
    (first..u64::from(guilds))
        .step_by(num_shards.max(1) as usize)
        .map(|i| i as u32)
}

/// Discord's recommended shard count: one per `per_shard` guilds, at least one, rounded up to a
/// multiple of the large-bot shard count.
pub fn recommended_shards(guilds: u32, per_shard: u32, multiple: u32) -> u32 {
    let shards = guilds.div_ceil(per_shard.max(1)).max(1);
    shards.div_ceil(multiple.max(1)) * multiple.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::shard_for_guild;

    #[test]
    fn every_guild_is_listed_on_exactly_the_shard_the_formula_names() {
        for num_shards in [1, 2, 3, 7, 16, 33] {
            let mut seen = vec![0u32; 1_000];
            for shard in 0..num_shards {
                let listed: Vec<u32> = guilds_on_shard(1_000, shard, num_shards).collect();
                assert_eq!(
                    listed.len() as u32,
                    guild_count_on_shard(1_000, shard, num_shards)
                );
                for index in listed {
                    assert_eq!(shard_for_guild(guild_id(index), num_shards), shard);
                    seen[index as usize] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "num_shards {num_shards}");
        }
    }

    #[test]
    fn layouts_are_balanced_within_one_guild() {
        let counts: Vec<u32> = (0..7).map(|s| guild_count_on_shard(100, s, 7)).collect();
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert_eq!(counts.iter().sum::<u32>(), 100);
        assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{counts:?}");
        assert_eq!(guild_count_on_shard(3, 5, 8), 0);
    }

    #[test]
    fn ids_round_trip() {
        let g = guild_id(41);
        assert_eq!(guild_index(g, 42), Some(41));
        assert_eq!(guild_index(g, 41), None);
        assert_eq!(guild_index(text_channel_id(g), 42), None);
        assert_eq!(channel_guild(text_channel_id(g), 42), Some(g));
        assert_eq!(channel_guild(voice_channel_id(g), 42), Some(g));
        assert_eq!(channel_guild(bot_role_id(g), 42), None);
        assert_eq!(
            resolve_channel(text_channel_id(g), 42),
            Some(Channel::Guild(g))
        );
        assert_eq!(resolve_channel(dm_channel_id(7), 42), Some(Channel::Dm));
        assert_eq!(resolve_channel(user_id(7), 42), None);
        assert_ne!(user_id(1), user_id(2));
        assert_eq!(user_id(1), user_id(1 + USERS));
    }

    #[test]
    fn a_guilds_members_are_the_bot_and_distinct_users_including_its_owner() {
        for index in [0, 3, 9_999, 10_005] {
            let members: Vec<Person> = members(index).collect();
            assert_eq!(members.len() as u32, member_count(index));
            assert_eq!(members[0], Person::Bot);
            assert_eq!(
                members[1],
                Person::User(u64::from(index) % USERS),
                "the owner"
            );
            let users: std::collections::BTreeSet<u64> = members[1..]
                .iter()
                .map(|m| match m {
                    Person::User(n) => *n,
                    Person::Bot => panic!("the bot twice"),
                })
                .collect();
            assert_eq!(users.len(), members.len() - 1);
            for n in 0..USERS {
                assert_eq!(
                    is_member(index, n),
                    users.contains(&n),
                    "guild {index} user {n}"
                );
            }
        }
        assert_eq!(user_index(user_id(42)), Some(42));
        assert_eq!(user_index(dm_channel_id(42)), None);
        assert_eq!(user_index(guild_id(1)), None);
        assert_eq!(username(10_007), "user7");
    }

    #[test]
    fn recommends_about_a_thousand_guilds_per_shard() {
        assert_eq!(recommended_shards(0, 1_000, 1), 1);
        assert_eq!(recommended_shards(1_000, 1_000, 1), 1);
        assert_eq!(recommended_shards(1_001, 1_000, 1), 2);
        assert_eq!(recommended_shards(250_000, 1_000, 16), 256);
    }
}
