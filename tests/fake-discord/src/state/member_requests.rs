//! op 8 Request Guild Members, as the state answers it: the guild and intent checks, the bot-wide
//! all-members limit (one per guild per window, change-log.mdx "Introducing Rate Limit When
//! Requesting All Guild Members"), then GUILD_MEMBERS_CHUNK or RATE_LIMITED dispatches queued on
//! the asking session, which its connection writes like any other.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use super::{Fake, lock};
use crate::commands::{self, MemberRequest};
use crate::control::Rule;
use crate::members;
use crate::payloads;
use crate::rules::{self, Micros};
use crate::session::{Event, Payload, Session};

/// What became of an op 8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembersAnswer {
    /// This many GUILD_MEMBERS_CHUNK dispatches were queued.
    Chunks(u32),
    /// A RATE_LIMITED dispatch was queued: the guild's window ends in `retry_after`.
    RateLimited { retry_after: Micros },
    /// Nothing is answered, as on Discord; `rule` says why.
    Ignored { rule: Rule, details: String },
}

impl Fake {
    /// Answers an op 8 that arrived `at` on `session`: nothing for a guild not on its shard or
    /// an empty query without GUILD_MEMBERS; RATE_LIMITED for an all-members request inside
    /// its guild's window; else the chunks. `presences` are sent only with GUILD_PRESENCES.
    pub fn request_guild_members(
        &self,
        session: &Session,
        request: &MemberRequest,
        at: Micros,
    ) -> MembersAnswer {
        let shard = [session.shard, session.num_shards];
        let index = match commands::guild_on_shard(request.guild_id, self.config.guilds, shard) {
            Ok(index) => index,
            Err(details) => {
                return MembersAnswer::Ignored {
                    rule: Rule::GuildNotOnShard,
                    details: format!("op 8: {details}"),
                };
            }
        };
        if request.needs_members_intent() && session.intents & rules::INTENT_GUILD_MEMBERS == 0 {
            return MembersAnswer::Ignored {
                rule: Rule::MembersIntentRequired,
                details: "op 8 with an empty `query` needs the GUILD_MEMBERS intent".into(),
            };
        }
        if request.is_all_members() {
            let mut rules = lock(&self.rules);
            if let Err(inside) = rules.member_requests.check(&request.guild_id, at) {
                drop(rules);
                let d = payloads::rate_limited(
                    request.guild_id,
                    inside.retry_after,
                    request.nonce.as_deref(),
                );
                session.push(dispatch("RATE_LIMITED", d));
                return MembersAnswer::RateLimited {
                    retry_after: inside.retry_after,
                };
            }
            rules.member_requests.record(request.guild_id, at);
        }
        let selection = members::select(index, request, &self.bot);
        let presences = request.presences && session.intents & rules::INTENT_GUILD_PRESENCES != 0;
        let chunks = payloads::guild_members_chunks(
            &self.bot,
            request.guild_id,
            &selection,
            presences,
            request.nonce.as_deref(),
        );
        let count = chunks.len() as u32;
        session.push_all(
            chunks
                .into_iter()
                .map(|d| dispatch("GUILD_MEMBERS_CHUNK", d)),
        );
        MembersAnswer::Chunks(count)
    }
}

/// A dispatch for one session only.
fn dispatch(name: &'static str, d: Vec<u8>) -> Payload {
    Payload::Event(Arc::new(Event {
        name: Cow::Borrowed(name),
        d: Bytes::from(d),
    }))
}
