//! The worker's Prometheus metrics (served on `/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use shardset_contract::{Role, ShardState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardStateLabels {
    pub shard: u32,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardReasonLabels {
    pub shard: u32,
    pub reason: &'static str,
}

/// The labels of `gateway_closes_total`: the shard and the close code, in decimal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardCodeLabels {
    pub shard: u32,
    pub code: u16,
}

/// The labels of `invalid_sessions_total`: the shard and what the op 9 answered
/// ([`crate::gateway::session::Phase::invalid_session_after`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardAfterLabels {
    pub shard: u32,
    pub after: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

/// The labels of `dispatch_age_seconds`: the worker's layout (its shard total) and what the age
/// is counted from (`received`, `created`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispatchAgeLabels {
    pub layout: String,
    pub since: &'static str,
}

/// The buckets of `dispatch_age_seconds`: 1 ms to about 65 s, doubling.
fn dispatch_age_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub opcode: u8,
    /// `sent`, `answered` (op 8's last chunk came), or a `CommandError::metric_label`.
    pub outcome: &'static str,
}

/// Every metric of the worker.
#[derive(Debug)]
pub struct Metrics {
    /// 1 for the state each shard is in, 0 for the others.
    pub shard_state: Family<ShardStateLabels, Gauge>,
    /// Last heartbeat round trip per shard, in seconds.
    pub heartbeat_latency: Family<ShardLabels, Gauge<f64, AtomicU64>>,
    /// Unix time of each shard's last heartbeat ACK (with the next one, what tells a silent
    /// shard: the chart's `ShardsetShardSilent`).
    pub last_heartbeat_ack: Family<ShardLabels, Gauge<f64, AtomicU64>>,
    /// Unix time of each shard's last dispatch received.
    pub last_dispatch: Family<ShardLabels, Gauge<f64, AtomicU64>>,
    /// Connections found silent (heartbeats without ACK: zombies), closed and resumed.
    pub silent_connections: Family<ShardLabels, Counter>,
    /// Close frames received from the gateway, by shard and code.
    pub gateway_closes: Family<ShardCodeLabels, Counter>,
    /// op 9 Invalid Session received, by shard and what it answered.
    pub invalid_sessions: Family<ShardAfterLabels, Counter>,
    /// Dispatches handled, by event name.
    pub events: Family<EventLabels, Counter>,
    /// How far behind the layout runs: from a dispatch's arrival on the socket
    /// (`since="received"`), or from its creation by Discord (`since="created"`, for events
    /// whose `d.id` is a snowflake made with them), to the handler's return.
    pub dispatch_age: Family<DispatchAgeLabels, Histogram, fn() -> Histogram>,
    /// Time from asking for the Identify permit to getting it.
    pub identify_wait: Histogram,
    /// Identifies sent.
    pub identifies: Family<ShardLabels, Counter>,
    /// Sessions resumed.
    pub resumes: Family<ShardLabels, Counter>,
    /// Reconnections (every connection after a shard's first).
    pub reconnects: Family<ShardLabels, Counter>,
    /// Reasons shards waited for their permit (gate, budget, redis, …).
    pub identify_waits: Family<ReasonLabels, Counter>,
    /// Redis record writes that failed (checkpoints, status, leases).
    pub redis_errors: Family<ReasonLabels, Counter>,
    /// 1 for the layout's role (`docs/resharding.md`), 0 for the others.
    pub layout_role: Family<RoleLabels, Gauge>,
    /// The roles revision the worker applied and acknowledged.
    pub layout_revision: Gauge,
    /// Claims taken during hand-overs, by result (won, lost, error, role_unknown).
    pub handover_claims: Family<ReasonLabels, Counter>,
    /// Events claimed on going from active to claiming (the back-fill).
    pub handover_backfill: Counter,
    /// Dispatches replayed by a resume while a reshard was under way (the protocol assumes
    /// each arrives within `W` of the other layout's copy; a long replay may break that).
    pub handover_replays: Counter,
    /// Gateway messages refused, by reason (`too_large`: over the size cap, e.g. a
    /// decompression bomb; `corrupt`: a zlib stream that cannot be inflated). Each closed its
    /// connection resumably.
    pub gateway_message_errors: Family<ReasonLabels, Counter>,
    /// Resume URLs not trusted with the token (`gateway::trust`), by where they came from
    /// (`record`: a saved session, treated as absent; `ready`: READY's, replaced by the gateway
    /// URL).
    pub untrusted_resume_urls: Family<SourceLabels, Counter>,
    /// Shard leases given up, by reason: `fenced` (not confirmed within the lease TTL minus the
    /// fence margin: the worker closed the connection itself), `taken` (another pod holds it).
    pub lease_lost: Family<ShardReasonLabels, Counter>,
    /// Commands from the bot ([`crate::command::Commands`]) the shards dealt with, by opcode
    /// and outcome (refusals before queueing are the caller's error only).
    pub commands: Family<CommandLabels, Counter>,
}

impl Metrics {
    /// The metrics, registered under the `shardset_worker` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            shard_state: Family::default(),
            heartbeat_latency: Family::default(),
            last_heartbeat_ack: Family::default(),
            last_dispatch: Family::default(),
            silent_connections: Family::default(),
            gateway_closes: Family::default(),
            invalid_sessions: Family::default(),
            events: Family::default(),
            dispatch_age: Family::new_with_constructor(dispatch_age_histogram),
            identify_wait: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            identifies: Family::default(),
            resumes: Family::default(),
            reconnects: Family::default(),
            identify_waits: Family::default(),
            redis_errors: Family::default(),
            layout_role: Family::default(),
            layout_revision: Gauge::default(),
            handover_claims: Family::default(),
            handover_backfill: Counter::default(),
            handover_replays: Counter::default(),
            gateway_message_errors: Family::default(),
            untrusted_resume_urls: Family::default(),
            lease_lost: Family::default(),
            commands: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("shardset_worker");
        r.register(
            "shard_state",
            "1 for the state each shard is in",
            metrics.shard_state.clone(),
        );
        r.register(
            "heartbeat_latency_seconds",
            "Last heartbeat round trip per shard",
            metrics.heartbeat_latency.clone(),
        );
        r.register(
            "last_heartbeat_ack_timestamp_seconds",
            "Unix time of the shard's last heartbeat ACK",
            metrics.last_heartbeat_ack.clone(),
        );
        r.register(
            "last_dispatch_timestamp_seconds",
            "Unix time of the shard's last dispatch received",
            metrics.last_dispatch.clone(),
        );
        r.register(
            "silent_connections",
            "Connections found silent (heartbeats without ACK: zombies), closed and resumed",
            metrics.silent_connections.clone(),
        );
        r.register(
            "gateway_closes",
            "Close frames received from the gateway, by shard and close code",
            metrics.gateway_closes.clone(),
        );
        r.register(
            "invalid_sessions",
            "op 9 Invalid Session received, by shard and what it answered (identify, resume, session)",
            metrics.invalid_sessions.clone(),
        );
        r.register(
            "events",
            "Dispatches handled, by event name",
            metrics.events.clone(),
        );
        r.register(
            "dispatch_age_seconds",
            "Time from a dispatch's arrival (since=received) or creation (since=created) to the handler's return, by layout",
            metrics.dispatch_age.clone(),
        );
        r.register(
            "identify_wait_seconds",
            "Time from asking for the Identify permit to getting it",
            metrics.identify_wait.clone(),
        );
        r.register(
            "identifies",
            "Identify payloads sent",
            metrics.identifies.clone(),
        );
        r.register("resumes", "Sessions resumed", metrics.resumes.clone());
        r.register(
            "reconnects",
            "Gateway reconnections",
            metrics.reconnects.clone(),
        );
        r.register(
            "identify_waits",
            "Times a shard was told to wait for its Identify permit, by reason",
            metrics.identify_waits.clone(),
        );
        r.register(
            "redis_errors",
            "Redis record operations that failed, by record",
            metrics.redis_errors.clone(),
        );
        r.register(
            "layout_role",
            "1 for the role of this worker's layout (active, standby, claiming, retired)",
            metrics.layout_role.clone(),
        );
        r.register(
            "layout_revision",
            "Revision of the layout roles applied and acknowledged",
            metrics.layout_revision.clone(),
        );
        r.register(
            "handover_claims",
            "Event claims during hand-overs, by result",
            metrics.handover_claims.clone(),
        );
        r.register(
            "handover_backfill",
            "Events claimed on going from active to claiming",
            metrics.handover_backfill.clone(),
        );
        r.register(
            "handover_replays",
            "Dispatches replayed by a resume while a reshard was under way",
            metrics.handover_replays.clone(),
        );
        r.register(
            "gateway_message_errors",
            "Gateway messages refused (too_large, corrupt); each closed its connection resumably",
            metrics.gateway_message_errors.clone(),
        );
        r.register(
            "untrusted_resume_urls",
            "Resume URLs not trusted with the token, by source (record, ready)",
            metrics.untrusted_resume_urls.clone(),
        );
        r.register(
            "lease_lost",
            "Shard leases given up, by reason (fenced, taken)",
            metrics.lease_lost.clone(),
        );
        r.register(
            "commands",
            "Gateway commands from the bot, by opcode and outcome (sent, answered, not_live, send_failed, rate_limited, session_lost)",
            metrics.commands.clone(),
        );
        metrics
    }

    /// Counts one command of `opcode` that ended as `outcome`.
    pub fn count_command(&self, opcode: u8, outcome: &'static str) {
        self.commands
            .get_or_create(&CommandLabels { opcode, outcome })
            .inc();
    }

    /// Moves the one-hot role gauge from `old` to `new`.
    pub fn set_role(&self, old: Option<Role>, new: Role) {
        if let Some(old) = old {
            self.layout_role
                .get_or_create(&RoleLabels { role: old.label() })
                .set(0);
        }
        self.layout_role
            .get_or_create(&RoleLabels { role: new.label() })
            .set(1);
    }

    /// Moves `shard`'s one-hot state gauge from `old` to `new`.
    pub fn set_state(&self, shard: u32, old: Option<ShardState>, new: ShardState) {
        if let Some(old) = old {
            self.shard_state
                .get_or_create(&ShardStateLabels {
                    shard,
                    state: state_label(old),
                })
                .set(0);
        }
        self.shard_state
            .get_or_create(&ShardStateLabels {
                shard,
                state: state_label(new),
            })
            .set(1);
    }
}

/// A fixed label for a shard state.
pub fn state_label(state: ShardState) -> &'static str {
    match state {
        ShardState::Connecting => "connecting",
        ShardState::WaitingForGate => "waiting_for_gate",
        ShardState::WaitingForBudget => "waiting_for_budget",
        ShardState::WaitingForLease => "waiting_for_lease",
        ShardState::Identifying => "identifying",
        ShardState::Resuming => "resuming",
        ShardState::Ready => "ready",
        ShardState::Reconnecting => "reconnecting",
        ShardState::Fatal => "fatal",
        ShardState::Stopped => "stopped",
    }
}
