//! The default binary's handler: a guild cache (id, name, member count, availability per shard),
//! optional forwarding of every dispatch to an in-pod endpoint, and an optional "act" path that
//! answers each `MESSAGE_CREATE` through REST (proof, against the fake, that exactly one layout
//! acts on each event). Event counters live in the shard loop (metric `events`).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::forward::Forwarder;
use crate::handler::{Dispatch, Handler, guild_id, opt_snowflake};
use shardset_contract::rest::DiscordRest;

/// What the cache knows of a guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedGuild {
    pub shard: u32,
    pub name: Option<String>,
    pub member_count: Option<u64>,
    pub available: bool,
}

/// Guilds by id.
#[derive(Debug, Default)]
pub struct GuildCache {
    guilds: Mutex<HashMap<u64, CachedGuild>>,
}

#[derive(Deserialize)]
struct GuildFields {
    #[serde(default, deserialize_with = "opt_snowflake")]
    id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    member_count: Option<u64>,
    #[serde(default)]
    unavailable: Option<bool>,
}

#[derive(Deserialize)]
struct ReadyGuilds {
    #[serde(default)]
    guilds: Vec<GuildFields>,
}

impl GuildCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CachedGuild>> {
        self.guilds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one dispatch; returns false when the event does not concern the cache.
    pub fn apply(&self, shard: u32, event: &str, data: &str) -> bool {
        match event {
            "READY" => {
                let Ok(ready) = serde_json::from_str::<ReadyGuilds>(data) else {
                    return false;
                };
                let mut guilds = self.lock();
                guilds.retain(|_, g| g.shard != shard);
                for g in ready.guilds.into_iter().filter_map(|g| g.id) {
                    guilds.insert(
                        g,
                        CachedGuild {
                            shard,
                            name: None,
                            member_count: None,
                            available: false,
                        },
                    );
                }
            }
            "GUILD_CREATE" | "GUILD_UPDATE" => {
                let Ok(fields) = serde_json::from_str::<GuildFields>(data) else {
                    return false;
                };
                let Some(id) = fields.id else { return false };
                let mut guilds = self.lock();
                let entry = guilds.entry(id).or_insert(CachedGuild {
                    shard,
                    name: None,
                    member_count: None,
                    available: true,
                });
                entry.shard = shard;
                entry.available = !fields.unavailable.unwrap_or(false);
                if fields.name.is_some() {
                    entry.name = fields.name;
                }
                if fields.member_count.is_some() {
                    entry.member_count = fields.member_count;
                }
            }
            "GUILD_DELETE" => {
                let Ok(fields) = serde_json::from_str::<GuildFields>(data) else {
                    return false;
                };
                let Some(id) = fields.id else { return false };
                let mut guilds = self.lock();
                if fields.unavailable.unwrap_or(false) {
                    if let Some(g) = guilds.get_mut(&id) {
                        g.available = false;
                    }
                } else {
                    guilds.remove(&id);
                }
            }
            "GUILD_MEMBER_ADD" | "GUILD_MEMBER_REMOVE" => {
                let Some(id) = guild_id(event, data) else {
                    return false;
                };
                if let Some(count) = self
                    .lock()
                    .get_mut(&id)
                    .and_then(|g| g.member_count.as_mut())
                {
                    if event == "GUILD_MEMBER_ADD" {
                        *count += 1;
                    } else {
                        *count = count.saturating_sub(1);
                    }
                }
            }
            _ => return false,
        }
        true
    }

    pub fn get(&self, id: u64) -> Option<CachedGuild> {
        self.lock().get(&id).cloned()
    }

    /// Guilds on `shard`.
    pub fn count_on(&self, shard: u32) -> u32 {
        self.lock().values().filter(|g| g.shard == shard).count() as u32
    }

    /// Every guild.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default handler.
#[derive(Debug, Default)]
pub struct DefaultHandler {
    pub cache: GuildCache,
    forwarder: Option<Forwarder>,
    replier: Option<DiscordRest>,
}

#[derive(Deserialize)]
struct MessageFields<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    channel_id: &'a str,
    #[serde(default)]
    author: Option<Author>,
}

#[derive(Deserialize)]
struct Author {
    #[serde(default)]
    bot: bool,
}

impl DefaultHandler {
    /// A handler that forwards to `forwarder` and answers messages through `replier`, if given.
    pub fn new(forwarder: Option<Forwarder>, replier: Option<DiscordRest>) -> Self {
        Self {
            cache: GuildCache::default(),
            forwarder,
            replier,
        }
    }

    /// Drops the forwarder so its task drains and ends.
    pub fn take_forwarder(&mut self) -> Option<Forwarder> {
        self.forwarder.take()
    }

    async fn reply(&self, rest: &DiscordRest, dispatch: &Dispatch<'_>) {
        let Ok(message) = serde_json::from_str::<MessageFields<'_>>(dispatch.data) else {
            return;
        };
        // Our own replies come back as MESSAGE_CREATE: never answer them (nor claim them).
        if message.author.is_some_and(|a| a.bot) {
            return;
        }
        // The claim decision: exactly one layout answers each message, also mid-reshard.
        if !dispatch.act().await {
            return;
        }
        let content = format!("ack {}", message.id);
        if let Err(e) = rest
            .create_message(message.channel_id, &content, Some(message.id))
            .await
        {
            warn!(error = %e, reason = e.metric_label(), "reply failed");
        }
    }
}

/// The JSON a forward endpoint receives for each dispatch:
/// `{"shard":..,"seq":..,"event":..,"guildId":..?,"active":..,"d":<d as received>}`.
pub fn forward_body(dispatch: &Dispatch<'_>) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Head<'a> {
        shard: u32,
        seq: u64,
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        guild_id: Option<String>,
        active: bool,
    }
    let head = Head {
        shard: dispatch.shard,
        seq: dispatch.seq,
        event: dispatch.event,
        guild_id: dispatch.guild_id().map(|g| g.to_string()),
        active: dispatch.active,
    };
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    // `d` goes in as the gateway sent it: valid JSON, never re-serialised.
    body.pop();
    body.extend_from_slice(b",\"d\":");
    body.extend_from_slice(dispatch.data.as_bytes());
    body.push(b'}');
    body
}

impl Handler for DefaultHandler {
    async fn dispatch(&self, dispatch: Dispatch<'_>) {
        self.cache
            .apply(dispatch.shard, dispatch.event, dispatch.data);
        if let Some(forwarder) = &self.forwarder {
            forwarder
                .forward(dispatch.shard, dispatch.seq, forward_body(&dispatch))
                .await;
        }
        if dispatch.active
            && dispatch.event == "MESSAGE_CREATE"
            && let Some(rest) = &self.replier
        {
            // Boxed: an HTTP request's (and a claim's) state would otherwise sit in every
            // shard's task.
            Box::pin(self.reply(rest, &dispatch)).await;
        }
    }

    fn settled_seq(&self, shard: u32, handled: u64) -> u64 {
        // A forwarded dispatch is settled once the endpoint answered it.
        self.forwarder
            .as_ref()
            .map_or(handled, |f| f.settled(shard, handled))
    }

    fn guilds_on(&self, shard: u32) -> Option<u32> {
        Some(self.cache.count_on(shard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &str {
        s
    }

    #[test]
    fn caches_guilds_through_their_lifecycle() {
        let cache = GuildCache::default();
        cache.apply(
            1,
            "READY",
            raw(r#"{"guilds":[{"id":"10","unavailable":true},{"id":"11","unavailable":true}]}"#),
        );
        assert_eq!(cache.count_on(1), 2);
        assert!(!cache.get(10).expect("cached").available);
        cache.apply(
            1,
            "GUILD_CREATE",
            raw(r#"{"id":"10","name":"ten","member_count":5}"#),
        );
        let g = cache.get(10).expect("cached");
        assert_eq!(
            (g.name.as_deref(), g.member_count, g.available),
            (Some("ten"), Some(5), true)
        );
        cache.apply(1, "GUILD_MEMBER_ADD", raw(r#"{"guild_id":"10"}"#));
        assert_eq!(cache.get(10).and_then(|g| g.member_count), Some(6));
        cache.apply(1, "GUILD_DELETE", raw(r#"{"id":"10","unavailable":true}"#));
        assert!(!cache.get(10).expect("kept").available);
        cache.apply(1, "GUILD_DELETE", raw(r#"{"id":"10"}"#));
        assert!(cache.get(10).is_none());
        assert!(!cache.apply(1, "MESSAGE_CREATE", raw("{}")));
    }

    #[test]
    fn forward_body_carries_routing_and_raw_data() {
        let data = raw(r#"{"id":"1","guild_id":"77","content":"hi"}"#);
        let acting = crate::acting::Acting::always_active("16");
        let body = forward_body(&Dispatch {
            shard: 3,
            seq: 9,
            event: "MESSAGE_CREATE",
            data,
            active: true,
            acting: &acting,
        });
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            r#"{"shard":3,"seq":9,"event":"MESSAGE_CREATE","guildId":"77","active":true,"d":{"id":"1","guild_id":"77","content":"hi"}}"#
        );
    }
}
