//! The bus of the tests: a real nats-server, the env that points workers at it, and the stream
//! read back with the checks of `docs/bus-protocol.md` ("Events").

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use fake_discord::control::SessionInfo;
use nats_test_server::NatsServer;
use shardset_contract::bus::{self, Partition, header};
use shardset_contract::env;

pub const STREAM: &str = "shardset-test-bot";
pub const PREFIX: &str = "shardset.test.bot";
pub const PARTITIONS: u32 = 4;

/// One message of the stream, its headers parsed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub stream_seq: u64,
    pub subject: String,
    pub event: String,
    pub shard: u32,
    pub total: u32,
    pub seq: u64,
    pub guild: Option<u64>,
    pub msg_id: String,
    pub data: Bytes,
}

pub struct Bus {
    pub nats: NatsServer,
}

impl Bus {
    pub fn start() -> Self {
        Self {
            nats: NatsServer::start(),
        }
    }

    /// The worker env of this bus (and `more`).
    pub fn env(&self, more: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars = vec![
            (env::NATS_URL.to_owned(), self.nats.url()),
            (env::SHARDSET_STREAM.to_owned(), STREAM.to_owned()),
            (env::SHARDSET_SUBJECT_PREFIX.to_owned(), PREFIX.to_owned()),
            (env::SHARDSET_PARTITIONS.to_owned(), PARTITIONS.to_string()),
        ];
        vars.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        vars
    }

    pub async fn js(&self) -> jetstream::Context {
        let client = async_nats::connect(self.nats.url()).await.expect("connect");
        jetstream::new(client)
    }

    /// Messages in the stream (0 when it does not exist yet).
    pub async fn count(&self) -> u64 {
        let js = self.js().await;
        match js.get_stream(STREAM).await {
            Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    }

    /// Every message of the stream, in stream order.
    pub async fn stored(&self) -> Vec<Stored> {
        let js = self.js().await;
        let mut stream = js.get_stream(STREAM).await.expect("stream");
        let state = stream.info().await.expect("info").state.clone();
        let mut stored = Vec::with_capacity(state.messages as usize);
        if state.messages == 0 {
            return stored;
        }
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let text = |name: &str| {
                m.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_else(|| panic!("message {seq} has no {name}"))
            };
            let number = |name: &str| -> u64 {
                text(name)
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} of {seq} is not a number"))
            };
            stored.push(Stored {
                stream_seq: seq,
                subject: m.subject.to_string(),
                event: text(header::EVENT),
                shard: number(header::SHARD) as u32,
                total: number(header::TOTAL) as u32,
                seq: number(header::SEQ),
                guild: m
                    .headers
                    .get(header::GUILD)
                    .map(|g| g.as_str().parse().expect("guild header")),
                msg_id: text(header::MSG_ID),
                data: m.payload.clone(),
            });
        }
        stored
    }
}

/// `(shard, seq)` of every dispatch `sessions` were given, each with its session id.
pub fn dispatched(sessions: &[SessionInfo]) -> BTreeMap<(u32, u64), String> {
    sessions
        .iter()
        .flat_map(|s| (1..=s.seq).map(move |seq| ((s.shard, seq), s.session_id.clone())))
        .collect()
}

/// The protocol's checks of `stored`, published by a layout of `total` shards that held
/// `sessions` (one per shard, no Identify in between) and was active throughout: every dispatch
/// exactly once, with its headers, session id, partition and raw `d`, and each guild's events
/// in gateway order. Returns how many events each guild had.
pub fn assert_every_dispatch_once(
    stored: &[Stored],
    sessions: &[SessionInfo],
    total: u32,
) -> HashMap<Option<u64>, usize> {
    let expected = dispatched(sessions);
    let mut seen: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut last_per_guild: HashMap<u64, (u32, u64)> = HashMap::new();
    let mut per_guild: HashMap<Option<u64>, usize> = HashMap::new();
    for m in stored {
        assert_eq!(m.total, total, "{m:?}");
        if let Some(first) = seen.insert((m.shard, m.seq), m.stream_seq) {
            panic!(
                "shard {} seq {} stored twice (stream seqs {first} and {})",
                m.shard, m.seq, m.stream_seq
            );
        }
        let session = expected
            .get(&(m.shard, m.seq))
            .unwrap_or_else(|| panic!("not a dispatch of the sessions {sessions:#?}: {m:?}"));
        assert_eq!(m.msg_id, bus::session_msg_id(session, m.seq), "{m:?}");
        assert_eq!(
            m.subject,
            bus::event_subject(PREFIX, Partition::of(m.guild, PARTITIONS)),
            "{m:?}"
        );
        let d: serde_json::Value = serde_json::from_slice(&m.data).expect("d is JSON");
        let guild_in_d = match m.event.as_str() {
            "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE" => d.get("id"),
            _ => d.get("guild_id"),
        }
        .and_then(|g| g.as_str())
        .map(|g| g.parse::<u64>().expect("snowflake"));
        assert_eq!(
            m.guild, guild_in_d,
            "the guild header says d's guild: {m:?}"
        );
        if let Some(guild) = m.guild {
            assert_eq!(
                bus::shard_of_guild(guild, total),
                m.shard,
                "a guild's events come from its shard"
            );
            if let Some((shard, seq)) = last_per_guild.insert(guild, (m.shard, m.seq)) {
                assert!(
                    shard == m.shard && seq < m.seq,
                    "guild {guild}: seq {} stored after {seq}",
                    m.seq
                );
            }
        }
        *per_guild.entry(m.guild).or_default() += 1;
    }
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "{} dispatches never reached the stream, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    per_guild
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits up to `within` for the stream to hold `count` messages.
pub async fn wait_count(bus: &Bus, count: u64, within: Duration) -> bool {
    super::scenario::wait_until(within, || async { bus.count().await >= count }).await
}
