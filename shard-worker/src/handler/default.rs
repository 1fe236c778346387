//! The default binary's handler: the guild cache ([`super::guild_cache`]), optional forwarding
//! of every dispatch to an in-pod endpoint ([`super::forward`]), and an optional "act" path that
//! answers each `MESSAGE_CREATE` through REST (proof, against the fake, that exactly one layout
//! acts on each event). Event counters live in the shard loop (metric `events`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use super::forward::Forwarder;
use super::guild_cache::GuildCache;
use super::{Dispatch, Handler};
use shardset_contract::rest::DiscordRest;

/// The longest the forward queue may take to drain at shutdown.
const FORWARD_DRAIN_WAIT: Duration = Duration::from_secs(10);

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
    /// A handler that forwards every dispatch to `forward_url` (`FORWARD_URL`; its task starts
    /// here, inside the runtime, and retries each dispatch until `shutdown` turns true: pass the
    /// worker's shutdown) and answers messages through `replier`, if given.
    pub fn new(
        forward_url: Option<String>,
        replier: Option<DiscordRest>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            cache: GuildCache::default(),
            forwarder: forward_url.map(|url| Forwarder::spawn(url, shutdown)),
            replier,
        }
    }

    /// Registers the handler's own metrics (the forwarder's) in the registry the worker serves.
    pub fn register(&self, registry: &mut Registry) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.register(registry);
        }
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
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<&'a str>,
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        guild_id: Option<String>,
        active: bool,
    }
    let head = Head {
        shard: dispatch.shard,
        seq: dispatch.seq,
        session_id: dispatch.session_id,
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
                .forward(
                    dispatch.shard,
                    dispatch.session_id,
                    dispatch.seq,
                    forward_body(&dispatch),
                )
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

    /// Drains the forward queue (at most 10 s).
    async fn finish(self: Arc<Self>) {
        if self.forwarder.is_none() {
            return;
        }
        let Ok(handler) = Arc::try_unwrap(self) else {
            warn!("handler still shared at exit; the forward queue may not drain");
            return;
        };
        let Some(forwarder) = handler.forwarder else {
            return;
        };
        match forwarder.close(FORWARD_DRAIN_WAIT).await {
            Some(0) => {}
            Some(undelivered) => warn!(
                undelivered,
                "dispatches not forwarded before shutdown; the next owner replays them"
            ),
            None => warn!(
                "the forward queue did not drain in time; the next owner replays what it held"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &str {
        s
    }

    #[test]
    fn forward_body_carries_routing_and_raw_data() {
        let data = raw(r#"{"id":"1","guild_id":"77","content":"hi"}"#);
        let acting = crate::handover::acting::Acting::always_active("16");
        let body = forward_body(&Dispatch {
            shard: 3,
            seq: 9,
            session_id: Some("abc"),
            event: "MESSAGE_CREATE",
            data,
            active: true,
            acting: &acting,
        });
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            r#"{"shard":3,"seq":9,"sessionId":"abc","event":"MESSAGE_CREATE","guildId":"77","active":true,"d":{"id":"1","guild_id":"77","content":"hi"}}"#
        );
    }
}
