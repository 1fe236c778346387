//! The world's events, routed to sessions: every session is indexed by `(num_shards, shard_id)`,
//! and an event of guild `g` goes to every session of every layout whose shard is
//! `(g >> 22) % num_shards`, so old and new layouts side by side each receive it (gateway.mdx
//! "Sharding"); guild-less events go to shard 0 only. Each event is serialized once and shared.
//! Messages created here are remembered for the replies report when asked; the bot's own
//! messages count as replies, once per message created, and honour `enforce_nonce`.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use super::{Fake, add, lock};
use crate::control::RepliesReport;
use crate::nonces::Nonce;
use crate::payloads::{self, Message};
use crate::rules::{self, US_PER_MS};
use crate::session::{Event, Payload, Session};
use crate::world::Person;

impl Fake {
    /// Every session that receives an event of `guild` (None: shard 0 of each layout) and has
    /// one of the `intents` (0: no intent needed).
    pub fn route(&self, guild: Option<u64>, intents: u64, out: &mut Vec<Arc<Session>>) {
        let sessions = self.sessions_read();
        for (&num_shards, layout) in &sessions.routes {
            let shard = guild.map_or(0, |g| rules::shard_for_guild(g, num_shards));
            if let Some(list) = layout.get(&shard) {
                out.extend(
                    list.iter()
                        .filter(|s| intents == 0 || s.intents & intents != 0)
                        .cloned(),
                );
            }
        }
    }

    /// Delivers one event to every session that routes it; returns how many.
    pub fn publish(&self, guild: Option<u64>, name: &str, d: Bytes) -> u32 {
        let mut targets = Vec::new();
        self.route(guild, 0, &mut targets);
        let event = Arc::new(Event {
            name: Cow::Owned(name.to_owned()),
            d,
        });
        for session in &targets {
            session.push(Payload::Event(Arc::clone(&event)));
        }
        add(&self.stats.events_generated, 1);
        targets.len() as u32
    }

    /// Creates a message in a channel of `guild` (or a DM) and dispatches MESSAGE_CREATE to
    /// every session that routes it; returns its id and its JSON. `track`: remember it for
    /// `/control/replies`.
    pub fn create_message(
        &self,
        new: &NewMessage<'_>,
        track: bool,
        targets: &mut Vec<Arc<Session>>,
    ) -> (u64, Bytes) {
        let now = self.clock.now_us();
        let id = self.snowflakes.next(now / US_PER_MS);
        let timestamp = payloads::timestamp(now);
        let msg = Message {
            id,
            channel_id: new.channel_id,
            guild_id: new.guild,
            author: new.author,
            content: new.content,
            timestamp: &timestamp,
            reply_to: new.reply_to,
            nonce: new.nonce.map(|n| n.json.as_str()),
        };
        let intent = if new.guild.is_some() {
            rules::INTENT_GUILD_MESSAGES
        } else {
            rules::INTENT_DIRECT_MESSAGES
        };
        targets.clear();
        self.route(new.guild, intent, targets);
        // Content is withheld from bots without MESSAGE_CONTENT, except in DMs and their own
        // messages (message.mdx, "Message Content Intent").
        let withheld = new.guild.is_some() && new.author != Person::Bot;
        let serialize = |with_content: bool| {
            let mut d = Vec::with_capacity(new.content.len() + 900);
            payloads::write_message_create(&mut d, &self.bot, &msg, with_content);
            Arc::new(Event {
                name: Cow::Borrowed("MESSAGE_CREATE"),
                d: Bytes::from(d),
            })
        };
        let full = serialize(true);
        let mut stripped = None;
        if track {
            // Before delivery, so that a reply can never arrive for an unknown message.
            lock(&self.replies).message(id);
        }
        for session in targets.iter() {
            let event = if withheld && session.intents & rules::INTENT_MESSAGE_CONTENT == 0 {
                Arc::clone(stripped.get_or_insert_with(|| serialize(false)))
            } else {
                Arc::clone(&full)
            };
            session.push(Payload::Event(event));
        }
        add(&self.stats.events_generated, 1);
        (id, full.d.clone())
    }

    /// The bot creates a message (`POST /channels/{id}/messages`); returns its JSON. With a
    /// nonce and `enforce_nonce`, a message the bot created with that nonce in the channel
    /// within the nonce window is returned instead, and nothing is created, dispatched or
    /// counted (message.mdx, "Create Message"). Otherwise the message is dispatched, and
    /// counted as a reply when it answers a synthetic message.
    pub fn create_bot_message(&self, new: &NewMessage<'_>, enforce_nonce: bool) -> BotMessage {
        let enforced = new.nonce.filter(|_| enforce_nonce);
        // Held until the message is remembered, so that two creates racing with one nonce
        // (two pods answering the same event) create one message.
        let mut nonces = enforced.map(|_| lock(&self.nonces));
        let now = self.clock.now_us();
        if let (Some(nonces), Some(nonce)) = (nonces.as_mut(), enforced)
            && let Some(first) = nonces.find(new.channel_id, &nonce.key, now)
        {
            lock(&self.replies).deduplicated();
            return BotMessage {
                d: first,
                created: false,
            };
        }
        if let Some(target) = new.reply_to {
            lock(&self.replies).reply(target);
        }
        let (_, d) = self.create_message(new, false, &mut Vec::new());
        if let (Some(nonces), Some(nonce)) = (nonces.as_mut(), enforced) {
            nonces.remember(new.channel_id, &nonce.key, now, d.clone());
        }
        BotMessage { d, created: true }
    }

    /// The replies report of a period.
    pub fn replies_report(&self, since_ms: u64, until_ms: u64) -> RepliesReport {
        lock(&self.replies).report(since_ms, until_ms)
    }
}

/// A message about to be created.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// `None`: a DM (routed to shard 0).
    pub guild: Option<u64>,
    pub channel_id: u64,
    pub author: Person,
    pub content: &'a str,
    /// A reply: the message it answers.
    pub reply_to: Option<u64>,
    pub nonce: Option<&'a Nonce>,
}

/// What a bot's create answered.
#[derive(Debug, Clone)]
pub struct BotMessage {
    /// The message's JSON.
    pub d: Bytes,
    /// `false`: an earlier message with the same nonce, returned instead.
    pub created: bool,
}
