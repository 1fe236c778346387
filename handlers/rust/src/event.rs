//! One event as a handler receives it, and the check of a message's headers and payload against
//! the wire format (`docs/bus-protocol.md`, "Events"), without I/O. A message that fails the check
//! is a [`BadMessage`]: reported and terminated, never handed to the handler.

use bytes::Bytes;
use shardset_contract::bus::{Partition, header};

use crate::commands::Commands;

/// A dispatch, as the worker published it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The dispatch's name (`t`), e.g. `MESSAGE_CREATE`.
    pub name: String,
    /// The shard that received it.
    pub shard: u32,
    /// The shard count of the layout that published it.
    pub total: u32,
    /// Its gateway sequence number in that shard's session.
    pub seq: u64,
    /// Its guild, if any.
    pub guild: Option<u64>,
    /// The raw `d` JSON as Discord sent it.
    pub data: Bytes,
    /// The partition it was consumed from.
    pub partition: Partition,
    /// Its sequence number in the stream (grows within a partition).
    pub stream_seq: u64,
    /// Which delivery this is (1 = first; more after a failed attempt or a failover).
    pub delivered: u64,
    /// Sends gateway commands back to the worker holding the event's layout.
    pub commands: Commands,
}

impl Event {
    /// Whether an earlier delivery of this event may have been handled already.
    pub fn redelivered(&self) -> bool {
        self.delivered > 1
    }
}

/// The fields a message's headers carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub name: String,
    pub shard: u32,
    pub total: u32,
    pub seq: u64,
    pub guild: Option<u64>,
}

/// Why a message is not an event of the protocol. `label` is a fixed metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {name} is not a decimal number: {value:?}")]
    BadNumber { name: &'static str, value: String },
    #[error("the payload is not JSON")]
    NotJson,
}

impl BadMessage {
    /// A fixed, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::BadNumber { .. } => "bad_number",
            Self::NotJson => "not_json",
        }
    }
}

/// Reads the protocol's headers through `get` and checks that `payload` is JSON.
pub fn parse_head<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    payload: &[u8],
) -> Result<Head, BadMessage> {
    let required = |name: &'static str| {
        get(name)
            .filter(|v| !v.is_empty())
            .ok_or(BadMessage::MissingHeader(name))
    };
    let name = required(header::EVENT)?.to_owned();
    let shard = number(header::SHARD, required(header::SHARD)?)?;
    let total = number(header::TOTAL, required(header::TOTAL)?)?;
    let seq = number(header::SEQ, required(header::SEQ)?)?;
    let guild = get(header::GUILD)
        .filter(|v| !v.is_empty())
        .map(|v| number(header::GUILD, v))
        .transpose()?;
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(BadMessage::NotJson);
    }
    Ok(Head {
        name,
        shard,
        total,
        seq,
        guild,
    })
}

fn number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, BadMessage> {
    value.trim().parse().map_err(|_| BadMessage::BadNumber {
        name,
        value: value.chars().take(32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn full() -> HashMap<&'static str, &'static str> {
        headers(&[
            (header::EVENT, "MESSAGE_CREATE"),
            (header::SHARD, "3"),
            (header::TOTAL, "16"),
            (header::SEQ, "42"),
            (header::GUILD, "41771983423143937"),
        ])
    }

    #[test]
    fn reads_every_field() {
        let h = full();
        let head = parse_head(|n| h.get(n).copied(), br#"{"id":"1"}"#).expect("valid");
        assert_eq!(
            head,
            Head {
                name: "MESSAGE_CREATE".into(),
                shard: 3,
                total: 16,
                seq: 42,
                guild: Some(41_771_983_423_143_937),
            }
        );
    }

    #[test]
    fn the_guild_is_optional() {
        let mut h = full();
        h.remove(header::GUILD);
        let head = parse_head(|n| h.get(n).copied(), b"{}").expect("valid");
        assert_eq!(head.guild, None);
    }

    #[test]
    fn refuses_missing_headers_bad_numbers_and_non_json() {
        let mut h = full();
        h.remove(header::SEQ);
        assert_eq!(
            parse_head(|n| h.get(n).copied(), b"{}"),
            Err(BadMessage::MissingHeader(header::SEQ))
        );
        let mut h = full();
        h.insert(header::SHARD, "three");
        let err = parse_head(|n| h.get(n).copied(), b"{}").expect_err("bad");
        assert_eq!(err.label(), "bad_number");
        let h = full();
        let err = parse_head(|n| h.get(n).copied(), b"{not json").expect_err("bad");
        assert_eq!(err, BadMessage::NotJson);
        assert!(parse_head(|_| None, b"").is_err());
    }
}
