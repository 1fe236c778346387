//! The answers to op 8 Request Guild Members, gathered by nonce: the GUILD_MEMBERS_CHUNK
//! dispatches of one request become one [`Members`], and a RATE_LIMITED dispatch for the request
//! becomes its [`RateLimited`] answer. Pure: the shard runner feeds it dispatches and gets back
//! which request is done.
//!
//! Source: discord-api-docs `developers/events/gateway-events.mdx`: "Guild Members Chunk"
//! (`guild_id`, `members`, `chunk_index`, `chunk_count`, `not_found`, `presences`, `nonce`) and
//! "Rate Limited" (`opcode`, `retry_after` in seconds, `meta: {guild_id, nonce}`; since 2025 an
//! all-members request is limited to once per guild per 30 s).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::snowflake::{opt_snowflake, snowflake_list};

/// The event names this module reads.
pub const GUILD_MEMBERS_CHUNK: &str = "GUILD_MEMBERS_CHUNK";
pub const RATE_LIMITED: &str = "RATE_LIMITED";

/// Every chunk of one op 8, put together: what the request's caller receives.
#[derive(Debug, Clone, Default)]
pub struct Members {
    pub guild_id: u64,
    /// The guild members, each the raw JSON of a Discord guild member object.
    pub members: Vec<Box<RawValue>>,
    /// Presences of those members (raw JSON), when the request asked for them.
    pub presences: Vec<Box<RawValue>>,
    /// Requested user ids that are not members.
    pub not_found: Vec<u64>,
    /// How many chunks the answer came in.
    pub chunks: u32,
    /// The raw `d` of every chunk, in `chunk_index` order: only for a request inserted with
    /// [`MemberRequests::insert_keeping_chunks`] (commands back over the bus answer with them,
    /// `docs/bus-protocol.md`, "Commands back"); empty otherwise.
    pub chunk_data: Vec<Box<RawValue>>,
}

/// Discord refused the request for now: try again after `retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimited {
    /// The opcode that was limited (8).
    pub opcode: u8,
    pub retry_after: Duration,
    pub guild_id: Option<u64>,
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(deserialize_with = "opt_snowflake")]
    guild_id: Option<u64>,
    #[serde(default)]
    members: Vec<Box<RawValue>>,
    #[serde(default)]
    presences: Vec<Box<RawValue>>,
    #[serde(default, deserialize_with = "snowflake_list")]
    not_found: Vec<u64>,
    chunk_index: u32,
    chunk_count: u32,
    #[serde(default)]
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct RateLimitedData {
    opcode: u8,
    retry_after: f64,
    #[serde(default)]
    meta: RateLimitMeta,
}

#[derive(Deserialize, Default)]
struct RateLimitMeta {
    #[serde(default, deserialize_with = "opt_snowflake")]
    guild_id: Option<u64>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Reads a RATE_LIMITED dispatch's `d`.
pub fn rate_limited(data: &str) -> Option<RateLimited> {
    let d: RateLimitedData = serde_json::from_str(data).ok()?;
    let retry_after = Duration::try_from_secs_f64(d.retry_after.max(0.0)).unwrap_or(Duration::MAX);
    Some(RateLimited {
        opcode: d.opcode,
        retry_after,
        guild_id: d.meta.guild_id,
        nonce: d.meta.nonce,
    })
}

/// What a dispatch meant for the requests waiting.
#[derive(Debug)]
pub enum Progress<R> {
    /// Not one of theirs (another event, no nonce, an unknown nonce): the handler's business.
    Unrelated,
    /// A chunk of a request that waits for more.
    Chunk,
    /// The last chunk: the request's answer.
    Done(R, Members),
    /// The request was rate limited.
    Limited(R, RateLimited),
}

struct Waiting<R> {
    reply: R,
    members: Members,
    /// Chunk indexes seen (a chunk replayed by a resume is not counted twice).
    seen: Vec<u32>,
    /// Each chunk's raw `d` with its index, when the caller wants them.
    kept: Option<Vec<(u32, Box<RawValue>)>>,
}

/// The op 8 requests of one shard waiting for their answers, by nonce. `R` is how the answer
/// reaches the caller (a channel in the runner).
pub struct MemberRequests<R> {
    waiting: HashMap<String, Waiting<R>>,
}

impl<R> Default for MemberRequests<R> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
        }
    }
}

impl<R> MemberRequests<R> {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// A request sent with `nonce` for `guild_id`, whose answer goes to `reply`.
    pub fn insert(&mut self, nonce: String, guild_id: u64, reply: R) {
        self.insert_with(nonce, guild_id, reply, None);
    }

    /// [`MemberRequests::insert`], and the answer also keeps each chunk's raw `d`
    /// ([`Members::chunk_data`]).
    pub fn insert_keeping_chunks(&mut self, nonce: String, guild_id: u64, reply: R) {
        self.insert_with(nonce, guild_id, reply, Some(Vec::new()));
    }

    fn insert_with(
        &mut self,
        nonce: String,
        guild_id: u64,
        reply: R,
        kept: Option<Vec<(u32, Box<RawValue>)>>,
    ) {
        let members = Members {
            guild_id,
            ..Members::default()
        };
        self.waiting.insert(
            nonce,
            Waiting {
                reply,
                members,
                seen: Vec::new(),
                kept,
            },
        );
    }

    /// Keeps only the requests whose reply still has someone waiting.
    pub fn retain(&mut self, mut waited_for: impl FnMut(&R) -> bool) {
        self.waiting.retain(|_, w| waited_for(&w.reply));
    }

    /// Every waiting request's reply (the session that would answer them is gone).
    pub fn drain(&mut self) -> impl Iterator<Item = R> + '_ {
        self.waiting.drain().map(|(_, w)| w.reply)
    }

    /// Applies one dispatch (`event`, raw `d`).
    pub fn on_dispatch(&mut self, event: &str, data: &str) -> Progress<R> {
        match event {
            GUILD_MEMBERS_CHUNK => self.on_chunk(data),
            RATE_LIMITED => {
                let Some(limited) = rate_limited(data) else {
                    return Progress::Unrelated;
                };
                match limited.nonce.as_ref().and_then(|n| self.waiting.remove(n)) {
                    Some(waiting) => Progress::Limited(waiting.reply, limited),
                    None => Progress::Unrelated,
                }
            }
            _ => Progress::Unrelated,
        }
    }

    fn on_chunk(&mut self, data: &str) -> Progress<R> {
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            return Progress::Unrelated;
        };
        let Some(nonce) = chunk.nonce.as_deref() else {
            return Progress::Unrelated;
        };
        let Some(waiting) = self.waiting.get_mut(nonce) else {
            return Progress::Unrelated;
        };
        if chunk
            .guild_id
            .is_some_and(|g| g != waiting.members.guild_id)
        {
            return Progress::Unrelated;
        }
        if !waiting.seen.contains(&chunk.chunk_index) {
            waiting.seen.push(chunk.chunk_index);
            let members = &mut waiting.members;
            members.members.extend(chunk.members);
            members.presences.extend(chunk.presences);
            members.not_found.extend(chunk.not_found);
            members.chunks = waiting.seen.len() as u32;
            if let Some(kept) = &mut waiting.kept
                && let Ok(raw) = RawValue::from_string(data.to_owned())
            {
                kept.push((chunk.chunk_index, raw));
            }
        }
        if waiting.seen.len() < chunk.chunk_count as usize {
            return Progress::Chunk;
        }
        match self.waiting.remove(nonce) {
            Some(mut done) => {
                if let Some(mut kept) = done.kept.take() {
                    kept.sort_by_key(|(index, _)| *index);
                    done.members.chunk_data = kept.into_iter().map(|(_, d)| d).collect();
                }
                Progress::Done(done.reply, done.members)
            }
            None => Progress::Unrelated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(nonce: &str, index: u32, count: u32, ids: &[u64]) -> String {
        let members: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"user":{{"id":"{id}"}},"roles":[]}}"#))
            .collect();
        format!(
            r#"{{"guild_id":"7","members":[{}],"chunk_index":{index},"chunk_count":{count},"nonce":"{nonce}"}}"#,
            members.join(",")
        )
    }

    #[test]
    fn chunks_of_a_request_become_one_answer() {
        let mut requests = MemberRequests::default();
        requests.insert("a".into(), 7, "caller a");
        requests.insert("b".into(), 7, "caller b");
        assert!(matches!(
            requests.on_dispatch(GUILD_MEMBERS_CHUNK, &chunk("a", 0, 3, &[1, 2])),
            Progress::Chunk
        ));
        // A chunk replayed (a resume) is not counted twice; another request's chunk is apart.
        assert!(matches!(
            requests.on_dispatch(GUILD_MEMBERS_CHUNK, &chunk("a", 0, 3, &[1, 2])),
            Progress::Chunk
        ));
        let Progress::Done(reply, b) =
            requests.on_dispatch(GUILD_MEMBERS_CHUNK, &chunk("b", 0, 1, &[9]))
        else {
            panic!("b is one chunk");
        };
        assert_eq!((reply, b.members.len(), b.chunks), ("caller b", 1, 1));
        requests.on_dispatch(GUILD_MEMBERS_CHUNK, &chunk("a", 2, 3, &[5]));
        let Progress::Done(reply, a) =
            requests.on_dispatch(GUILD_MEMBERS_CHUNK, &chunk("a", 1, 3, &[3, 4]))
        else {
            panic!("a is complete");
        };
        assert_eq!(reply, "caller a");
        assert_eq!((a.guild_id, a.members.len(), a.chunks), (7, 5, 3));
        assert!(a.members[0].get().contains(r#""id":"1""#));
        assert!(a.chunk_data.is_empty(), "not asked for");
        assert!(requests.is_empty());
    }

    #[test]
    fn kept_chunks_come_back_raw_in_index_order() {
        let mut requests = MemberRequests::default();
        requests.insert_keeping_chunks("k".into(), 7, ());
        let (first, second) = (chunk("k", 0, 2, &[1]), chunk("k", 1, 2, &[2]));
        requests.on_dispatch(GUILD_MEMBERS_CHUNK, &second);
        requests.on_dispatch(GUILD_MEMBERS_CHUNK, &second);
        let Progress::Done((), members) = requests.on_dispatch(GUILD_MEMBERS_CHUNK, &first) else {
            panic!("complete");
        };
        let raw: Vec<&str> = members.chunk_data.iter().map(|d| d.get()).collect();
        assert_eq!(raw, vec![first.as_str(), second.as_str()]);
    }

    #[test]
    fn chunks_without_a_known_nonce_are_the_handlers() {
        let mut requests = MemberRequests::default();
        requests.insert("a".into(), 7, ());
        let no_nonce = r#"{"guild_id":"7","members":[],"chunk_index":0,"chunk_count":1}"#;
        for (event, data) in [
            (GUILD_MEMBERS_CHUNK, no_nonce.to_owned()),
            (GUILD_MEMBERS_CHUNK, chunk("zzz", 0, 1, &[1])),
            (GUILD_MEMBERS_CHUNK, "not json".to_owned()),
            ("MESSAGE_CREATE", chunk("a", 0, 1, &[1])),
        ] {
            assert!(
                matches!(requests.on_dispatch(event, &data), Progress::Unrelated),
                "{event} {data}"
            );
        }
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn not_found_and_presences_are_gathered() {
        let mut requests = MemberRequests::default();
        requests.insert("n".into(), 7, ());
        let data = r#"{"guild_id":"7","members":[],"chunk_index":0,"chunk_count":1,
            "not_found":["11",12],"presences":[{"status":"online"}],"nonce":"n"}"#;
        let Progress::Done((), members) = requests.on_dispatch(GUILD_MEMBERS_CHUNK, data) else {
            panic!("one chunk");
        };
        assert_eq!(members.not_found, vec![11, 12]);
        assert_eq!(members.presences.len(), 1);
    }

    #[test]
    fn rate_limited_answers_its_request_with_retry_after() {
        let mut requests = MemberRequests::default();
        requests.insert("n".into(), 7, "caller");
        let other = r#"{"opcode":8,"retry_after":3.5,"meta":{"guild_id":"7","nonce":"other"}}"#;
        assert!(matches!(
            requests.on_dispatch(RATE_LIMITED, other),
            Progress::Unrelated
        ));
        let data = r#"{"opcode":8,"retry_after":27.25,"meta":{"guild_id":"7","nonce":"n"}}"#;
        let Progress::Limited(reply, limited) = requests.on_dispatch(RATE_LIMITED, data) else {
            panic!("limited");
        };
        assert_eq!(reply, "caller");
        assert_eq!(limited.opcode, 8);
        assert_eq!(limited.retry_after, Duration::from_millis(27_250));
        assert_eq!(limited.guild_id, Some(7));
        assert!(requests.is_empty());
        assert!(rate_limited(r#"{"opcode":8}"#).is_none());
    }

    #[test]
    fn requests_nobody_waits_for_are_dropped() {
        let mut requests = MemberRequests::default();
        requests.insert("a".into(), 7, 1);
        requests.insert("b".into(), 7, 2);
        requests.retain(|r| *r == 2);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests.drain().collect::<Vec<_>>(), vec![2]);
        assert!(requests.is_empty());
    }
}
