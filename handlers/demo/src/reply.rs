//! The demo's bot logic: every MESSAGE_CREATE written by a user (not a bot: our own replies come
//! back as MESSAGE_CREATE too) gets the reply `ack <message id>`, referencing it, with the
//! message id as `nonce` and `enforce_nonce: true`. A redelivered event (its replica died after
//! replying, before acking) is answered with the same nonce, and Discord returns the first reply
//! instead of creating a second (discord-api-docs `developers/resources/message.mdx`).

use std::sync::Mutex;

use serde::Deserialize;
use shardset_contract::rest::DiscordRest;
use shardset_handler::{Event, HandlerError};
use tracing::warn;

use crate::metrics::Metrics;
use crate::order::{OrderBook, Seen};

/// What a reply needs from a MESSAGE_CREATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub message_id: String,
    pub channel_id: String,
}

#[derive(Deserialize)]
struct MessageFields {
    id: String,
    channel_id: String,
    #[serde(default)]
    author: Option<Author>,
}

#[derive(Deserialize)]
struct Author {
    #[serde(default)]
    bot: bool,
}

/// The message to answer, if `event` (`name`, raw `d`) is a user's MESSAGE_CREATE.
pub fn reply_to(name: &str, data: &[u8]) -> Option<ReplyTo> {
    if name != "MESSAGE_CREATE" {
        return None;
    }
    let message: MessageFields = serde_json::from_slice(data).ok()?;
    if message.author.is_some_and(|a| a.bot) {
        return None;
    }
    Some(ReplyTo {
        message_id: message.id,
        channel_id: message.channel_id,
    })
}

/// The handler of the demo service.
pub struct Replier {
    rest: DiscordRest,
    order: Mutex<OrderBook>,
    metrics: Metrics,
}

impl Replier {
    pub fn new(rest: DiscordRest, metrics: Metrics) -> Self {
        Self {
            rest,
            order: Mutex::new(OrderBook::default()),
            metrics,
        }
    }

    /// Handles one event: counts it, checks its guild's order, replies if it is a user's message.
    /// A failed reply is an error: the event comes back later (same nonce).
    pub async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        self.metrics.event(&event);
        let Some(target) = reply_to(&event.name, &event.data) else {
            return Ok(());
        };
        if let (Some(guild), Ok(id)) = (event.guild, target.message_id.parse::<u64>()) {
            let seen = match self.order.lock() {
                Ok(mut book) => book.observe(guild, id, event.redelivered()),
                Err(_) => Seen::InOrder,
            };
            if seen == Seen::Reordered {
                warn!(guild, message = id, partition = %event.partition, "message out of order");
                self.metrics.reordering();
            }
        }
        let content = format!("ack {}", target.message_id);
        match self
            .rest
            .create_message_once(
                &target.channel_id,
                &content,
                Some(&target.message_id),
                &target.message_id,
            )
            .await
        {
            Ok(()) => {
                self.metrics.reply("ok");
                Ok(())
            }
            Err(e) => {
                self.metrics.reply(e.metric_label());
                Err(Box::new(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_users_messages_only() {
        let user = br#"{"id":"11","channel_id":"22","author":{"id":"3","bot":false}}"#;
        assert_eq!(
            reply_to("MESSAGE_CREATE", user),
            Some(ReplyTo {
                message_id: "11".into(),
                channel_id: "22".into()
            })
        );
        let bot = br#"{"id":"12","channel_id":"22","author":{"id":"4","bot":true}}"#;
        assert_eq!(reply_to("MESSAGE_CREATE", bot), None);
        assert_eq!(reply_to("MESSAGE_UPDATE", user), None);
        assert_eq!(reply_to("MESSAGE_CREATE", b"{}"), None);
    }
}
