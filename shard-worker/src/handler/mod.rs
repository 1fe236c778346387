//! What a bot does with its events: the [`Handler`] trait and the [`Dispatch`] it receives.
//!
//! Beside it, the stock handler of the `shard-worker` binary: [`default::DefaultHandler`] (a
//! [`guild_cache::GuildCache`], the [`forward::Forwarder`] to an in-pod endpoint, REST replies).
//!
//! Each shard hands its dispatches to the handler **in order**, one at a time: the next one is
//! read from the gateway only when the handler's future for this one completed. A slow handler
//! therefore slows its shard (backpressure) rather than piling events up in memory; a handler
//! that blocks longer than a heartbeat interval makes the connection a zombie, and the shard
//! resumes (replaying what it had not handled).
//!
//! **Acting on events.** During a reshard two layouts receive the same events. A handler that
//! does something with an event beyond its own memory (replies, writes, calls) asks
//! [`Dispatch::act`] right before; across layouts exactly one gets `true` for each event
//! (`docs/resharding.md`). Caches may be filled from every dispatch.

pub mod default;
pub mod forward;
pub mod guild_cache;
mod pending;

use std::future::Future;
use std::sync::Arc;

use serde::Deserialize;

pub(crate) use crate::gateway::snowflake::opt_snowflake;
use crate::handover::acting::Acting;

/// One dispatch (op 0) as it arrived, parsed only as far as routing needs.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'a> {
    /// The shard that received it.
    pub shard: u32,
    /// Its sequence number in the shard's session.
    pub seq: u64,
    /// Discord's id of the session it arrived on (READY's `session_id`): with `seq`, a key no
    /// other dispatch has, so an endpoint can tell a replayed dispatch from a new one.
    pub session_id: Option<&'a str>,
    /// The event name (`t`), e.g. `MESSAGE_CREATE`.
    pub event: &'a str,
    /// The raw JSON text of `d` (`null` when absent), parsed by whoever needs its fields.
    pub data: &'a str,
    /// Whether this shard's layout may act on events now (role `active` or `claiming`): a hint
    /// for cheap filtering. The decision itself is [`Dispatch::act`].
    pub active: bool,
    /// The layout's role, for [`Dispatch::act`].
    pub acting: &'a Acting,
}

impl Dispatch<'_> {
    /// Whether to act on this dispatch: true for exactly one layout across a hand-over. Call it
    /// once, right before acting; during a hand-over it may take a claim in Redis (one round
    /// trip), so call it only for events the handler acts on.
    pub async fn act(&self) -> bool {
        self.acting.act(self.event, self.data).await
    }

    /// The guild it concerns, if any (`d.guild_id`, or `d.id` for `GUILD_*` events). Parsed on
    /// demand: most handlers never need it for most events.
    pub fn guild_id(&self) -> Option<u64> {
        guild_id(self.event, self.data)
    }
}

/// Receives the dispatches of every shard of the worker.
///
/// ```
/// use shard_worker::handler::{Dispatch, Handler};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[derive(Default)]
/// struct CountMessages(AtomicU64);
///
/// impl Handler for CountMessages {
///     async fn dispatch(&self, dispatch: Dispatch<'_>) {
///         // `active` filters cheaply; `act()` decides (exactly one layout acts on each event).
///         if dispatch.active && dispatch.event == "MESSAGE_CREATE" && dispatch.act().await {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one dispatch. Called in order per shard; shards run concurrently.
    fn dispatch(&self, dispatch: Dispatch<'_>) -> impl Future<Output = ()> + Send;

    /// The seq up to which `shard`'s dispatches are settled, given that [`Handler::dispatch`]
    /// returned for every one up to `handled`. Checkpoints save this seq, so a resume (after a
    /// crash, or by the next pod after a shutdown) replays what follows. A handler that passes
    /// events on asynchronously (a queue to another process) returns the last one that arrived
    /// there; the default: everything it returned from.
    fn settled_seq(&self, _shard: u32, handled: u64) -> u64 {
        handled
    }

    /// Guilds the handler knows on `shard` (for the shard's status record); `None` if it does
    /// not track guilds.
    fn guilds_on(&self, _shard: u32) -> Option<u32> {
        None
    }

    /// Called once by [`crate::worker::Builder::run`] after every shard stopped (each session
    /// saved up to [`Handler::settled_seq`]) and before the worker's endpoints close: let go of
    /// what the handler still holds, e.g. drain a queue to another process. By then the worker
    /// holds the only `Arc` of the handler (unless the caller kept one). The default does
    /// nothing.
    fn finish(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The guild a payload concerns (`d.guild_id`, or `d.id` for `GUILD_*` events).
pub fn guild_id(event: &str, data: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Refs {
        #[serde(default, deserialize_with = "opt_snowflake")]
        guild_id: Option<u64>,
        #[serde(default, deserialize_with = "opt_snowflake")]
        id: Option<u64>,
    }
    let refs: Refs = serde_json::from_str(data).ok()?;
    if matches!(event, "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE") {
        refs.id
    } else {
        refs.guild_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_guild_of_guild_and_member_events() {
        let raw = |s: &'static str| s;
        assert_eq!(
            guild_id("GUILD_CREATE", raw(r#"{"id":"41","name":"g"}"#)),
            Some(41)
        );
        assert_eq!(
            guild_id(
                "MESSAGE_CREATE",
                raw(r#"{"id":"9","guild_id":"41","content":"hi"}"#)
            ),
            Some(41)
        );
        assert_eq!(guild_id("MESSAGE_CREATE", raw(r#"{"id":"9"}"#)), None);
        assert_eq!(guild_id("TYPING_START", raw(r#"{"guild_id":null}"#)), None);
    }
}
