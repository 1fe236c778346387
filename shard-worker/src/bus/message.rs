//! A dispatch as a shard hands it to the bus ([`Taken`]), and the message the protocol makes of
//! it (`docs/bus-protocol.md`, "Events"): the partition subject, the `Shardset-*` headers and the
//! de-duplication id. Pure: no I/O.

use std::sync::Arc;

use bytes::Bytes;
use shardset_contract::bus::{self, Partition, header};

use super::order::OrderKey;
use super::sink::Message;
use crate::handover::acting::Publication;

/// One dispatch a shard took, owned until the bus acknowledged it.
#[derive(Debug, Clone)]
pub struct Taken {
    pub shard: u32,
    /// The layout's shard count.
    pub total: u32,
    /// The gateway sequence number in the shard's session.
    pub seq: u64,
    /// The dispatch name `t`.
    pub event: Box<str>,
    /// The guild it concerns (`d.guild_id`, or `d.id` for `GUILD_*`).
    pub guild: Option<u64>,
    /// The raw `d`, as the gateway sent it.
    pub data: Bytes,
    /// Discord's id of the session it arrived on (from READY), if known.
    pub session: Option<Arc<str>>,
}

impl Taken {
    /// What it must stay in order with.
    pub fn order_key(&self) -> OrderKey {
        OrderKey::of(self.guild, self.shard)
    }

    /// Its id on the bus, as the layout's role says: `s:<session>:<seq>` by session (the
    /// content id when the session is unknown, which a dispatch never is: READY comes first),
    /// `c:<key>` by content; `None` when withheld.
    pub fn message_id(&self, publication: Publication) -> Option<String> {
        match (publication, &self.session) {
            (Publication::BySession, Some(session)) => Some(bus::session_msg_id(session, self.seq)),
            (Publication::BySession, None) => Some(bus::content_msg_id(
                &crate::handover::roles::ClaimKey::of_raw(&self.event, &self.data).hex(),
            )),
            (Publication::ByContent(key), _) => Some(bus::content_msg_id(&key.hex())),
            (Publication::Withheld(_), _) => None,
        }
    }

    /// The message of this dispatch with id `id`, for a stream of subject prefix `prefix` and
    /// `partitions` guild partitions.
    pub fn message(&self, prefix: &str, partitions: u32, id: String) -> Message {
        let mut headers = Vec::with_capacity(5);
        headers.push((header::EVENT, self.event.to_string()));
        headers.push((header::SHARD, self.shard.to_string()));
        headers.push((header::TOTAL, self.total.to_string()));
        headers.push((header::SEQ, self.seq.to_string()));
        if let Some(guild) = self.guild {
            headers.push((header::GUILD, guild.to_string()));
        }
        Message {
            subject: bus::event_subject(prefix, Partition::of(self.guild, partitions)),
            headers,
            id,
            payload: self.data.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::roles::ClaimKey;

    fn taken(guild: Option<u64>) -> Taken {
        Taken {
            shard: 6,
            total: 16,
            seq: 42,
            event: "MESSAGE_CREATE".into(),
            guild,
            data: Bytes::from_static(br#"{"id":"1","guild_id":"41771983423143937"}"#),
            session: Some("abc".into()),
        }
    }

    #[test]
    fn a_guild_event_goes_to_its_partition_with_every_header() {
        let t = taken(Some(41_771_983_423_143_937));
        let id = t.message_id(Publication::BySession).expect("published");
        assert_eq!(id, "s:abc:42");
        let m = t.message("shardset.ns.bot", 16, id);
        assert_eq!(m.subject, "shardset.ns.bot.events.6");
        assert_eq!(
            m.headers,
            vec![
                ("Shardset-Event", "MESSAGE_CREATE".to_owned()),
                ("Shardset-Shard", "6".to_owned()),
                ("Shardset-Total", "16".to_owned()),
                ("Shardset-Seq", "42".to_owned()),
                ("Shardset-Guild", "41771983423143937".to_owned()),
            ]
        );
        assert_eq!(m.payload, t.data, "d as the gateway sent it");
    }

    #[test]
    fn an_event_without_a_guild_goes_to_the_global_partition_without_a_guild_header() {
        let t = taken(None);
        let m = t.message("S", 16, "s:abc:42".into());
        assert_eq!(m.subject, "S.events.global");
        assert!(m.headers.iter().all(|(name, _)| *name != "Shardset-Guild"));
    }

    #[test]
    fn ids_follow_the_role() {
        let t = taken(Some(1));
        let key = ClaimKey::of_raw("MESSAGE_CREATE", &t.data);
        assert_eq!(
            t.message_id(Publication::ByContent(key)),
            Some(format!("c:{}", key.hex()))
        );
        assert_eq!(t.message_id(Publication::Withheld("not_acting")), None);
        let without_session = Taken {
            session: None,
            ..t.clone()
        };
        assert_eq!(
            without_session.message_id(Publication::BySession),
            Some(format!("c:{}", key.hex())),
            "deterministic even then"
        );
    }
}
