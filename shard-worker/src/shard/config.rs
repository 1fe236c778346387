//! What every shard of a worker shares: its settings ([`ShardConfig`]) and its parts
//! ([`Shared`]: token, Identify queue, records, handler, bus, board, layout role, command
//! inboxes).

use std::sync::Arc;
use std::time::Duration;

use super::records::Records;
use crate::bus::Bus;
use crate::command::Inboxes;
use crate::gateway::compression::GatewayCompression;
use crate::gateway::session::SessionConfig;
use crate::gateway::trust::ResumeTrust;
use crate::handover::acting::Acting;
use crate::identify::queue::IdentifyQueue;
use crate::worker::board::Board;
use shardset_contract::token::Token;

/// Settings shared by every shard of a worker.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// `num_shards` of the layout.
    pub total: u32,
    /// Gateway intents.
    pub intents: u64,
    /// The gateway URL from `GET /gateway/bot`.
    pub gateway_url: String,
    /// Transport compression asked for on every connection (`GATEWAY_COMPRESSION`).
    pub compression: GatewayCompression,
    /// The send limit's window (Discord: 60 s; `GATEWAY_SEND_WINDOW_MS`).
    pub send_window: Duration,
    /// The resume URLs the shards may send the token to (from `DISCORD_API_URL` and
    /// `gateway_url`): a saved session or a READY naming another is not resumed there.
    pub resume_trust: ResumeTrust,
    pub session: SessionConfig,
    /// TTL of the shard lease.
    pub lease_ttl: Duration,
    /// TTL of saved sessions (the resume window).
    pub resume_window: Duration,
    /// This pod's name (lease owners, logs).
    pub pod: String,
    /// WebSocket read buffer per connection (small: thousands of idle shards each hold one).
    pub read_buffer: usize,
}

/// What every shard of a worker shares.
pub struct Shared<H> {
    pub config: ShardConfig,
    pub token: Token,
    pub queue: Arc<dyn IdentifyQueue>,
    /// Leases and saved sessions; `None` runs without custody across pods (tests, single
    /// process).
    pub records: Option<Records>,
    pub handler: Arc<H>,
    /// Where every dispatch is published besides the handler (`NATS_URL`), if anywhere.
    pub bus: Option<Bus>,
    pub board: Arc<Board>,
    /// The layout's role during reshards (`P:active-layout`): whether and how it acts.
    pub acting: Arc<Acting>,
    /// The shards' command channels ([`crate::command::Commands::new`]); each shard's task
    /// takes its own. Empty (`Inboxes::default()`): no commands.
    pub inboxes: Inboxes,
}

impl<H: crate::handler::Handler> Shared<H> {
    /// The seq up to which `shard`'s dispatches are settled, given that it handled every one up
    /// to `handled`: what the handler settled ([`crate::handler::Handler::settled_seq`]) and the
    /// bus acknowledged. Checkpoints and the final save go no further, so a crash replays the
    /// rest.
    pub fn settled_seq(&self, shard: u32, handled: u64) -> u64 {
        let settled = self.handler.settled_seq(shard, handled);
        match &self.bus {
            Some(bus) => settled.min(bus.settled(shard, handled)),
            None => settled,
        }
    }
}
