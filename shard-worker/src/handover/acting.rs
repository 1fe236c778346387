//! Whether this layout acts on an event: the worker's side of the hand-over protocol
//! (`docs/resharding.md`), around the pure [`super::roles::Roles`].
//!
//! - [`Acting::act`] is the one question a handler asks before it acts (replies, writes, ...):
//!   `active` → yes; `standby`/`retired` → no; `claiming` → yes only if this layout wins the
//!   event's claim (`SET P:claim:<key> <layout> NX PX <ttl>`), so across layouts exactly one acts.
//!   [`Acting::publication`] asks the same for publishing to the bus, and says with which id.
//! - [`watch`] polls `P:active-layout` every [`POLL`] and applies the layout's role: on going
//!   from `active` to `claiming` it first claims what it acted on recently (the back-fill), then
//!   acknowledges the revision in every shard's status record (through the [`Board`]).
//!
//! Why a poll and not pub/sub: one `GET` per pod every 250 ms is nothing for Redis (a thousand
//! pods make 4,000 small reads per second), it works unchanged on Redis Cluster and through
//! proxies, and it cannot miss a change: a pub/sub message published while a worker reconnects
//! is lost, so a poll would be needed anyway. The operator waits for acknowledgements, not for
//! delivery, so the poll period only adds its half (125 ms on average) to each of the few steps
//! of a hand-over.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch as tokio_watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::records::HandoverRecords;
use super::roles::{ClaimKey, Decision, Roles};
use crate::worker::board::Board;
use crate::worker::metrics::{Metrics, ReasonLabels};
use shardset_contract::{LayoutRoles, Role};

/// How often `P:active-layout` is read.
pub const POLL: Duration = Duration::from_millis(250);
/// How long [`Acting::act`] waits for the first read of the roles before skipping the event.
pub const ROLE_WAIT: Duration = Duration::from_secs(10);
/// How long a claim is retried while Redis does not answer, before the event is skipped.
pub const CLAIM_GIVE_UP: Duration = Duration::from_secs(5);

/// [`Publication::Withheld`]: the layout is `standby` or `retired`.
pub const WITHHELD_NOT_ACTING: &str = "not_acting";
/// [`Publication::Withheld`]: the other layout holds the event's claim.
pub const WITHHELD_CLAIM_LOST: &str = "claim_lost";

/// How a layout puts one event on the bus ([`Acting::publication`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// With the session's id (`s:<session>:<seq>`): the layout is `active`.
    BySession,
    /// With the content id (`c:<key>`): the layout is `claiming` and holds the event's claim.
    ByContent(ClaimKey),
    /// Not at all, for the reason given ([`WITHHELD_NOT_ACTING`], [`WITHHELD_CLAIM_LOST`]).
    Withheld(&'static str),
}

/// How a claim is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Before acting: given up (not acting) after [`CLAIM_GIVE_UP`] without Redis.
    ToAct,
    /// Before publishing: retried until Redis answers; this layout's own claim counts as won.
    ForTheBus,
}

/// Hand-over settings of a worker.
#[derive(Debug, Clone)]
pub struct HandoverConfig {
    /// `W`: the longest time between two layouts receiving one event.
    pub window: Duration,
    /// Lifetime of a claim.
    pub claim_ttl: Duration,
}

impl Default for HandoverConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(shardset_contract::DEFAULT_HANDOVER_WINDOW_MS),
            claim_ttl: Duration::from_millis(shardset_contract::DEFAULT_HANDOVER_CLAIM_TTL_MS),
        }
    }
}

impl HandoverConfig {
    /// The settings with the claim TTL raised to at least `3 W` (a claim must outlive the time
    /// in which the other layout can still see its event).
    pub fn normalized(mut self) -> Self {
        self.claim_ttl = self.claim_ttl.max(self.window * 3);
        self
    }
}

/// The role of this worker's layout, shared by its shards and its handler.
pub struct Acting {
    layout: String,
    config: HandoverConfig,
    roles: Mutex<Roles>,
    /// The role as a number, for the per-dispatch `may_act` without the lock.
    role_code: AtomicU8,
    /// Turns true after the first successful read of the roles.
    known: tokio_watch::Sender<bool>,
    records: Option<HandoverRecords>,
    metrics: Option<Arc<Metrics>>,
    epoch: Instant,
    /// Back-fill claims not written yet (Redis failed): written before the next acknowledgement.
    pending_backfill: Mutex<Vec<String>>,
    /// The roles document was found missing after a revision was seen (warned once per loss).
    document_lost: AtomicBool,
}

impl std::fmt::Debug for Acting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acting")
            .field("layout", &self.layout)
            .field("role", &self.role())
            .finish_non_exhaustive()
    }
}

const UNKNOWN: u8 = 0;

fn code(role: Role) -> u8 {
    match role {
        Role::Active => 1,
        Role::Standby => 2,
        Role::Claiming => 3,
        Role::Retired => 4,
    }
}

fn role_of_code(code: u8) -> Option<Role> {
    match code {
        1 => Some(Role::Active),
        2 => Some(Role::Standby),
        3 => Some(Role::Claiming),
        4 => Some(Role::Retired),
        _ => None,
    }
}

impl Acting {
    /// Always active: a worker without Redis (tests, a single process).
    pub fn always_active(layout: impl Into<String>) -> Self {
        let (known, _) = tokio_watch::channel(true);
        Self {
            layout: layout.into(),
            config: HandoverConfig::default(),
            roles: Mutex::new(Roles::fixed(Role::Active)),
            role_code: AtomicU8::new(code(Role::Active)),
            known,
            records: None,
            metrics: None,
            epoch: Instant::now(),
            pending_backfill: Mutex::new(Vec::new()),
            document_lost: AtomicBool::new(false),
        }
    }

    /// The role of `layout` as [`watch`] reads it from Redis; unknown (nothing acts) until the
    /// first read.
    pub fn with_redis(
        layout: impl Into<String>,
        records: HandoverRecords,
        config: HandoverConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let config = config.normalized();
        let (known, _) = tokio_watch::channel(false);
        Self {
            layout: layout.into(),
            roles: Mutex::new(Roles::new(config.window * 2)),
            config,
            role_code: AtomicU8::new(UNKNOWN),
            known,
            records: Some(records),
            metrics: Some(metrics),
            epoch: Instant::now(),
            pending_backfill: Mutex::new(Vec::new()),
            document_lost: AtomicBool::new(false),
        }
    }

    pub fn layout(&self) -> &str {
        &self.layout
    }

    /// The handling lag above which a shard of this layout is behind (`W / 2`).
    pub fn lag_bound_ms(&self) -> u64 {
        shardset_contract::handover_lag_bound_ms(self.config.window.as_millis() as u64)
    }

    fn roles(&self) -> MutexGuard<'_, Roles> {
        self.roles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The role applied now (`None` before the first read).
    pub fn role(&self) -> Option<Role> {
        role_of_code(self.role_code.load(Ordering::Acquire))
    }

    /// Whether the handler may act at all now (`active` or `claiming`): the `Dispatch::active`
    /// hint. Acting itself must go through [`Acting::act`].
    pub fn may_act(&self) -> bool {
        self.role().is_some_and(Role::may_act)
    }

    /// True when this layout is retired: its sessions end with the pod (close 1000).
    pub fn retired(&self) -> bool {
        self.role() == Some(Role::Retired)
    }

    /// Whether this worker would act on the event `event` with payload `data`: exactly one
    /// layout answers true for each event, also during a hand-over. Call it once per event, right
    /// before acting (a `claiming` layout's answer is a claim taken in Redis).
    pub async fn act(&self, event: &str, data: &str) -> bool {
        let key = ClaimKey::of(event, data);
        let mut waited = false;
        loop {
            let decision = self.roles().decide(key, self.now_ms());
            match decision {
                Decision::Act => return true,
                Decision::Skip => return false,
                Decision::Claim => return self.claim(key, Claim::ToAct).await,
                Decision::Unknown if waited => {
                    self.count("role_unknown");
                    warn!(layout = %self.layout, "roles still unknown; not acting on the event");
                    return false;
                }
                Decision::Unknown => {
                    let mut known = self.known.subscribe();
                    let _ = tokio::time::timeout(ROLE_WAIT, known.wait_for(|k| *k)).await;
                    waited = true;
                }
            }
        }
    }

    /// How this layout puts the event `event` with raw `d` `data` on the bus
    /// (`docs/bus-protocol.md`, "`Nats-Msg-Id`"). Publishing is acting: exactly one layout
    /// publishes each event, decided as [`Acting::act`] decides, except that nothing is given up
    /// in doubt (withholding would lose the event): an unknown role is waited for, and a claim
    /// is retried until Redis answers (meanwhile the shard's in-flight bound pauses it, and
    /// self-fencing ends its session if Redis stays away). A claim this layout already holds
    /// counts as won: a replay after a crash publishes again, and the bus drops the copy.
    pub async fn publication(&self, event: &str, data: &[u8]) -> Publication {
        let key = ClaimKey::of_raw(event, data);
        loop {
            let decision = self.roles().decide(key, self.now_ms());
            match decision {
                Decision::Act => return Publication::BySession,
                Decision::Skip if self.role() == Some(Role::Retired) => {
                    return self.published_if_held(key).await;
                }
                Decision::Skip => return Publication::Withheld(WITHHELD_NOT_ACTING),
                Decision::Claim => return self.claim_for_bus(key).await,
                Decision::Unknown => {
                    let mut known = self.known.subscribe();
                    let _ = known.wait_for(|k| *k).await;
                }
            }
        }
    }

    /// A retired layout publishes only what it holds the claim of: an event it acted on (the
    /// back-fill of its active time, or a claim won by its handler) whose publication is
    /// decided only now, behind the role change. The other layout lost that claim and withholds
    /// the event, so withholding it here too would lose it. Nothing new is claimed: past `W` the
    /// active layout acts without claims. Redis is asked until it answers, as for a claim.
    async fn published_if_held(&self, key: ClaimKey) -> Publication {
        let Some(records) = &self.records else {
            return Publication::Withheld(WITHHELD_NOT_ACTING);
        };
        let hex = key.hex();
        let mut pause = Duration::from_millis(20);
        loop {
            match records.holds(&hex, &self.layout).await {
                Ok(true) => return Publication::ByContent(key),
                Ok(false) => return Publication::Withheld(WITHHELD_NOT_ACTING),
                Err(e) => {
                    debug!(error = %e, "cannot read an event's claim; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    async fn claim_for_bus(&self, key: ClaimKey) -> Publication {
        if self.claim(key, Claim::ForTheBus).await {
            Publication::ByContent(key)
        } else {
            Publication::Withheld(WITHHELD_CLAIM_LOST)
        }
    }

    /// Takes the claim of `key` for this layout, as `how` says; true when won.
    async fn claim(&self, key: ClaimKey, how: Claim) -> bool {
        let Some(records) = &self.records else {
            return true;
        };
        let hex = key.hex();
        let deadline = Instant::now() + CLAIM_GIVE_UP;
        let mut pause = Duration::from_millis(20);
        loop {
            let ttl = self.config.claim_ttl;
            let claimed = match how {
                Claim::ToAct => records.claim(&hex, &self.layout, ttl).await,
                Claim::ForTheBus => records.claim_or_own(&hex, &self.layout, ttl).await,
            };
            match claimed {
                Ok(won) => {
                    self.count(if won { "won" } else { "lost" });
                    return won;
                }
                Err(e) if how == Claim::ForTheBus || Instant::now() + pause < deadline => {
                    debug!(error = %e, "claim failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    // At most once: without Redis nobody can know whether the other layout acted.
                    self.count("error");
                    warn!(error = %e, "cannot claim an event; not acting on it");
                    return false;
                }
            }
        }
    }

    fn count(&self, result: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .handover_claims
                .get_or_create(&ReasonLabels { reason: result })
                .inc();
        }
    }

    /// Applies the document `doc` (None: unset). The revision is acknowledged once the change
    /// is complete: after the back-fill claims are written. `Err` leaves it unacknowledged; the
    /// next poll tries the back-fill again.
    async fn apply(&self, doc: Option<&LayoutRoles>, board: &Board) -> Result<(), String> {
        if doc.is_none() && self.roles().keeps_role_without_document() {
            if !self.document_lost.swap(true, Ordering::AcqRel) {
                warn!(
                    layout = %self.layout,
                    role = self.role().map_or("unknown", Role::label),
                    revision = self.roles().revision(),
                    "the layout roles are gone from Redis (lost mid-reshard?): keeping this role until the operator writes them again"
                );
            }
            return Ok(());
        }
        self.document_lost.store(false, Ordering::Release);
        let role = LayoutRoles::role_of(doc, &self.layout);
        let revision = doc.map_or(0, |d| d.revision);
        let recording = LayoutRoles::reshard_under_way(doc);
        let change = self.roles().apply(role, revision, recording, self.now_ms());
        self.role_code.store(code(role), Ordering::Release);
        self.known.send_replace(true);
        if let Some(change) = &change {
            if let Some(metrics) = &self.metrics {
                metrics.set_role(change.from, change.to);
                metrics.layout_revision.set(revision as i64);
            }
            info!(
                layout = %self.layout,
                from = change.from.map_or("unknown", Role::label),
                to = change.to.label(),
                revision,
                backfill = change.backfill.len(),
                "layout role applied"
            );
            self.pending()
                .extend(change.backfill.iter().map(ClaimKey::hex));
        }
        let backfill = self.pending().clone();
        if !backfill.is_empty()
            && let Some(records) = &self.records
        {
            records
                .claim_all(&backfill, &self.layout, self.config.claim_ttl)
                .await
                .map_err(|e| format!("back-fill of {} claims failed: {e}", backfill.len()))?;
            if let Some(metrics) = &self.metrics {
                metrics.handover_backfill.inc_by(backfill.len() as u64);
            }
            self.pending().clear();
        }
        if board.layout_revision() != revision || change.is_some() {
            board.acknowledge_layout(revision);
        }
        Ok(())
    }

    fn pending(&self) -> MutexGuard<'_, Vec<String>> {
        self.pending_backfill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// True while a reshard is under way (the roles name more than one layout).
    pub fn reshard_under_way(&self) -> bool {
        self.roles().recording()
    }
}

/// Keeps `acting` in step with `P:active-layout` until `stop` turns true. Redis errors keep the
/// last role (live sessions go on) and are retried on the next poll.
pub async fn watch(acting: Arc<Acting>, board: Arc<Board>, mut stop: tokio_watch::Receiver<bool>) {
    let Some(records) = acting.records.clone() else {
        return;
    };
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut complained = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match records.layout_roles().await {
            Ok(doc) => {
                complained = false;
                if let Err(e) = acting.apply(doc.as_ref(), &board).await {
                    warn!(error = %e, "layout role not acknowledged yet");
                }
            }
            Err(e) => {
                if !complained {
                    warn!(error = %e, reason = e.metric_label(), "cannot read the layout roles; keeping the last one");
                    complained = true;
                }
                if let Some(metrics) = &acting.metrics {
                    metrics
                        .redis_errors
                        .get_or_create(&ReasonLabels { reason: "roles" })
                        .inc();
                }
            }
        }
    }
}
