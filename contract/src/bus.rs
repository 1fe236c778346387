//! The bot tier's bus (`docs/bus-protocol.md`): the names, subjects, headers, message ids and
//! partitions of the NATS JetStream wire format, and the keys of the handlers' partition
//! ownership. Pure functions and constants only, so the publishing worker, the operator and the
//! handler library agree by construction (and a third language follows the document).

use std::fmt;
use std::time::Duration;

/// The protocol version, in the stream's metadata under [`metadata::PROTOCOL`].
pub const PROTOCOL_VERSION: u32 = 1;
/// Default number of guild partitions (`spec.bus.partitions`).
pub const DEFAULT_PARTITIONS: u32 = 16;
/// Default duplicate window of the stream: longer than the longest replay (a checkpoint
/// interval plus a resume) and than the hand-over's `W`.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Default lease TTL of the handlers' ownership bucket (its `max_age`), also the consumers'
/// `ack_wait`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The handler group of replicas that do not name one.
pub const DEFAULT_GROUP: &str = "default";
/// A consumer never has more than one message delivered and not yet acknowledged: the
/// partition's order holds across redeliveries and across a change of owner.
pub const CONSUMER_MAX_ACK_PENDING: i64 = 1;
/// The KV key the acting workers keep with the acting layout's total (`{"total":N}`).
pub const LAYOUT_KEY: &str = "layout";

/// NATS message headers of an event.
pub mod header {
    /// The dispatch's `t`, e.g. `MESSAGE_CREATE`.
    pub const EVENT: &str = "Shardset-Event";
    /// The publishing shard's id (decimal).
    pub const SHARD: &str = "Shardset-Shard";
    /// The publishing layout's shard count (decimal).
    pub const TOTAL: &str = "Shardset-Total";
    /// The gateway sequence number in that shard's session (decimal).
    pub const SEQ: &str = "Shardset-Seq";
    /// The guild id (decimal snowflake); absent for events without a guild.
    pub const GUILD: &str = "Shardset-Guild";
    /// JetStream's de-duplication id ([`super::session_msg_id`], [`super::content_msg_id`]).
    pub const MSG_ID: &str = "Nats-Msg-Id";
}

/// Keys of the stream's `metadata` that handlers read instead of being configured.
pub mod metadata {
    /// [`super::PROTOCOL_VERSION`] (decimal).
    pub const PROTOCOL: &str = "shardset.io/protocol";
    /// The number of guild partitions `P` (decimal).
    pub const PARTITIONS: &str = "shardset.io/partitions";
    /// The subject prefix `S`.
    pub const SUBJECT_PREFIX: &str = "shardset.io/subject-prefix";
}

/// Where an event goes: one of the `P` guild partitions, or the partition of events without a
/// guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Partition {
    Guild(u32),
    Global,
}

impl Partition {
    /// The partition of an event of `guild` (none: [`Partition::Global`]): `(guild >> 22) % P`,
    /// Discord's own shard formula over the snowflake's timestamp bits, so a guild keeps its
    /// partition whatever the shard count.
    pub fn of(guild: Option<u64>, partitions: u32) -> Self {
        match guild {
            Some(id) => Self::Guild(((id >> 22) % u64::from(partitions.max(1))) as u32),
            None => Self::Global,
        }
    }

    /// Every partition of a stream with `partitions` guild partitions, in assignment order:
    /// `0..P`, then the global one.
    pub fn all(partitions: u32) -> impl Iterator<Item = Self> {
        (0..partitions)
            .map(Self::Guild)
            .chain(std::iter::once(Self::Global))
    }

    /// The position in [`Partition::all`]: `p`, or `P` for the global partition.
    pub fn index(self, partitions: u32) -> usize {
        match self {
            Self::Guild(p) => p as usize,
            Self::Global => partitions as usize,
        }
    }

    /// The last subject token: `<p>` or `global`.
    pub fn token(self) -> String {
        self.to_string()
    }

    /// Parses a [`Partition::token`].
    pub fn parse(token: &str) -> Option<Self> {
        match token {
            "global" => Some(Self::Global),
            digits => digits.parse().ok().map(Self::Guild),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guild(p) => write!(f, "{p}"),
            Self::Global => f.write_str("global"),
        }
    }
}

/// The default stream name of a ShardSet: `shardset-<namespace>-<name>`. A ShardSet's name may
/// hold dots, which stream names may not: they become `_`.
pub fn default_stream_name(namespace: &str, shardset: &str) -> String {
    format!("shardset-{namespace}-{shardset}").replace('.', "_")
}

/// The default subject prefix of a ShardSet: `shardset.<namespace>.<name>` (dots in the name
/// become `_`, so the prefix has exactly three tokens).
pub fn default_subject_prefix(namespace: &str, shardset: &str) -> String {
    format!("shardset.{namespace}.{}", shardset.replace('.', "_"))
}

/// `S.events.<p>` or `S.events.global`.
pub fn event_subject(prefix: &str, partition: Partition) -> String {
    format!("{prefix}.events.{partition}")
}

/// The stream's one subject filter: `S.events.>`.
pub fn events_filter(prefix: &str) -> String {
    format!("{prefix}.events.>")
}

/// The queue group the workers take commands in: of two pods overlapping during a session's
/// move between them, one answers.
pub const COMMAND_QUEUE_GROUP: &str = "shardset-worker";

/// Where the worker holding shard `shard` of layout `total` takes commands: `S.commands.<total>.<shard>`.
pub fn command_subject(prefix: &str, total: u32, shard: u32) -> String {
    format!("{prefix}.commands.{total}.{shard}")
}

/// The shard of `guild` in a layout of `total` shards (discord-api-docs
/// `developers/events/gateway.mdx`, "Sharding": `shard_id = (guild_id >> 22) % num_shards`).
pub fn shard_of_guild(guild: u64, total: u32) -> u32 {
    ((guild >> 22) % u64::from(total.max(1))) as u32
}

/// The message id of an event published by an acting (non-claiming) layout: `s:<session>:<seq>`.
/// A successor resuming the same session replays the same ids, which the duplicate window drops.
pub fn session_msg_id(session_id: &str, seq: u64) -> String {
    format!("s:{session_id}:{seq}")
}

/// The message id of an event published while the layout is `claiming`: `c:<32 hex>`, the
/// event's claim key (XXH3-128 of name, NUL, raw `d`), so both layouts' copies collide.
pub fn content_msg_id(claim_key_hex: &str) -> String {
    format!("c:{claim_key_hex}")
}

/// The handlers' ownership bucket of stream `stream`: `<stream>-handlers`.
pub fn handlers_bucket(stream: &str) -> String {
    format!("{stream}-handlers")
}

/// A group's member key of replica `replica`: `<group>.members.<replica>`.
pub fn member_key(group: &str, replica: &str) -> String {
    format!("{group}.members.{replica}")
}

/// The prefix of a group's member keys: `<group>.members.`.
pub fn member_prefix(group: &str) -> String {
    format!("{group}.members.")
}

/// A group's lease key of a partition: `<group>.owner.<p>` / `<group>.owner.global`.
pub fn owner_key(group: &str, partition: Partition) -> String {
    format!("{group}.owner.{partition}")
}

/// The prefix of a group's lease keys: `<group>.owner.`.
pub fn owner_prefix(group: &str) -> String {
    format!("{group}.owner.")
}

/// A group's durable consumer of a partition: `<stream>-<group>-p<p>` / `<stream>-<group>-global`.
pub fn consumer_name(stream: &str, group: &str, partition: Partition) -> String {
    match partition {
        Partition::Guild(p) => format!("{stream}-{group}-p{p}"),
        Partition::Global => format!("{stream}-{group}-global"),
    }
}

/// Whether `name` may be a group or replica name: 1 to 100 of `[A-Za-z0-9_-]` (it becomes a KV
/// key token and part of a consumer name).
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guild_goes_to_its_discord_shard_formula_partition() {
        // 41771983423143937 >> 22 = 9959216934, % 16 = 6 (a guild id from Discord's docs).
        let guild = 41_771_983_423_143_937_u64;
        assert_eq!(Partition::of(Some(guild), 16), Partition::Guild(6));
        assert_eq!(shard_of_guild(guild, 16), 6);
        assert_eq!(Partition::of(None, 16), Partition::Global);
        assert_eq!(Partition::of(Some(guild), 0), Partition::Guild(0));
    }

    #[test]
    fn partitions_in_assignment_order_and_their_tokens() {
        let all: Vec<_> = Partition::all(2).collect();
        assert_eq!(
            all,
            [Partition::Guild(0), Partition::Guild(1), Partition::Global]
        );
        assert_eq!(Partition::Global.index(2), 2);
        for p in all {
            assert_eq!(Partition::parse(&p.token()), Some(p));
        }
        assert_eq!(Partition::parse("x"), None);
    }

    #[test]
    fn names_subjects_keys_and_ids() {
        assert_eq!(default_stream_name("ns", "my.bot"), "shardset-ns-my_bot");
        assert_eq!(default_subject_prefix("ns", "my.bot"), "shardset.ns.my_bot");
        let s = "shardset.ns.bot";
        assert_eq!(
            event_subject(s, Partition::Guild(7)),
            "shardset.ns.bot.events.7"
        );
        assert_eq!(
            event_subject(s, Partition::Global),
            "shardset.ns.bot.events.global"
        );
        assert_eq!(events_filter(s), "shardset.ns.bot.events.>");
        assert_eq!(command_subject(s, 24, 5), "shardset.ns.bot.commands.24.5");
        assert_eq!(session_msg_id("abc", 42), "s:abc:42");
        assert_eq!(
            content_msg_id(&"0".repeat(32)),
            format!("c:{}", "0".repeat(32))
        );
        assert_eq!(handlers_bucket("st"), "st-handlers");
        assert_eq!(member_key("g", "r-1"), "g.members.r-1");
        assert_eq!(owner_key("g", Partition::Global), "g.owner.global");
        assert_eq!(consumer_name("st", "g", Partition::Guild(3)), "st-g-p3");
        assert_eq!(consumer_name("st", "g", Partition::Global), "st-g-global");
        assert!(valid_name("pod-abc_1"));
        assert!(!valid_name("a.b") && !valid_name("") && !valid_name(&"a".repeat(101)));
    }
}
