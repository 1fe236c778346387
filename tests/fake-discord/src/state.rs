//! The fake's shared state and the decisions that span connections: Identify and Resume (the
//! rules of `rules.rs` applied to the live registry), the session registry and its routing index,
//! the logs the control API reports, and the counters.
//!
//! Routing: every session is indexed by `(num_shards, shard_id)`. An event of guild `g` goes to
//! every session of every layout whose shard is `(g >> 22) % num_shards`, so old and new layouts
//! side by side each receive it (gateway.mdx "Sharding"); guild-less events go to shard 0 only.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use rand::RngExt;
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::config::Config;
use crate::control::{
    BudgetInfo, Counters, Fault, FaultRequest, IdentifyOutcome, IdentifyRecord, LoadSettings,
    LoadStatus, Rule, SessionInfo, Target, Violation,
};
use crate::payloads::{self, Author, Bot, Message};
use crate::replies::Replies;
use crate::rules::{
    self, Breach, Budget, CloseCode, IdentifyFields, IdentifyPolicy, IdentifyWindows, Micros,
    ResumeVerdict, Spend, US_PER_MS,
};
use crate::session::{Event, Link, Payload, Session};
use crate::snowflake::Snowflakes;
use crate::world;

/// Most records kept per log; later ones are counted, not stored.
const LOG_CAPACITY: usize = 100_000;

/// What the control plane asks of a connection.
#[derive(Debug, Clone)]
pub enum Command {
    Fault(Fault),
    /// Close with this code (budget exhaustion: 4004 for everyone).
    Close {
        code: u16,
        reason: String,
    },
    /// Another connection resumed this connection's session.
    Superseded,
}

/// A live connection as the registry sees it.
#[derive(Debug)]
struct ConnectionHandle {
    commands: mpsc::UnboundedSender<Command>,
    session: Option<Arc<Session>>,
}

#[derive(Debug)]
struct RuleState {
    windows: IdentifyWindows,
    budget: Budget,
    token_reset: bool,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<String, Arc<Session>>,
    /// num_shards → shard_id → sessions.
    routes: BTreeMap<u32, HashMap<u32, Vec<Arc<Session>>>>,
}

impl Sessions {
    fn insert(&mut self, session: Arc<Session>) {
        self.routes
            .entry(session.num_shards)
            .or_default()
            .entry(session.shard)
            .or_default()
            .push(Arc::clone(&session));
        self.by_id.insert(session.id.clone(), session);
    }

    fn remove(&mut self, session: &Session) -> bool {
        if self.by_id.remove(&session.id).is_none() {
            return false;
        }
        if let Some(layout) = self.routes.get_mut(&session.num_shards) {
            if let Some(list) = layout.get_mut(&session.shard) {
                list.retain(|s| s.id != session.id);
                if list.is_empty() {
                    layout.remove(&session.shard);
                }
            }
            if layout.is_empty() {
                self.routes.remove(&session.num_shards);
            }
        }
        true
    }
}

#[derive(Debug, Default)]
struct Logs {
    identifies: Vec<IdentifyRecord>,
    violations: Vec<Violation>,
}

/// Counters updated from many tasks.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub identifies: AtomicU64,
    pub identifies_accepted: AtomicU64,
    pub resumes: AtomicU64,
    pub resumes_failed: AtomicU64,
    pub heartbeats: AtomicU64,
    pub dispatches_sent: AtomicU64,
    pub payload_bytes_sent: AtomicU64,
    pub wire_bytes_sent: AtomicU64,
    pub events_generated: AtomicU64,
    pub overflows: AtomicU64,
    pub violations: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The verdict on an Identify.
#[derive(Debug)]
pub enum IdentifyVerdict {
    /// READY and the guilds are queued on the new session.
    Ready(Arc<Session>),
    /// op 9 `false`.
    InvalidSession,
    /// Close the connection.
    Close(CloseCode, String),
}

/// The verdict on a Resume.
#[derive(Debug)]
pub enum ResumeOutcome {
    /// Replay after the client's seq, up to and including RESUMED at `resumed_seq`.
    Resumed {
        session: Arc<Session>,
        resumed_seq: u64,
    },
    /// op 9 `false`.
    Invalid,
    /// Close the connection.
    Close(CloseCode, String),
}

/// Who a connection is, for violation records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub connection: u64,
    pub session: Option<&'a Session>,
    pub shard: Option<[u32; 2]>,
}

/// The whole fake.
#[derive(Debug)]
pub struct Fake {
    pub config: Config,
    pub clock: Clock,
    pub bot: Bot,
    pub stats: Stats,
    pub snowflakes: Snowflakes,
    rules: Mutex<RuleState>,
    sessions: RwLock<Sessions>,
    connections: Mutex<HashMap<u64, ConnectionHandle>>,
    logs: Mutex<Logs>,
    replies: Mutex<Replies>,
    next_connection: AtomicU64,
    /// The synthetic load's settings; the load task watches them.
    pub load: watch::Sender<LoadSettings>,
    pub load_generated: AtomicU64,
    /// Flips to `true` on shutdown; connections close with 1001.
    pub shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a panic elsewhere must not wedge the fake.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fake {
    pub fn new(config: Config) -> Arc<Self> {
        let clock = Clock::new();
        let now = clock.now_us();
        let bot = Bot {
            id: config.application_id,
            username: config.bot_username.clone(),
            privileged_intents: config.privileged_intents & rules::PRIVILEGED_INTENTS,
        };
        let rules = Self::fresh_rules(&config, now);
        let load = LoadSettings {
            rate: config.load_rate,
            payload_bytes: config.load_payload_bytes,
            dm_percent: config.load_dm_percent.min(100),
        };
        Arc::new(Self {
            clock,
            bot,
            stats: Stats::default(),
            snowflakes: Snowflakes::default(),
            rules: Mutex::new(rules),
            sessions: RwLock::new(Sessions::default()),
            connections: Mutex::new(HashMap::new()),
            logs: Mutex::new(Logs::default()),
            replies: Mutex::new(Replies::new(config.reply_tracking)),
            next_connection: AtomicU64::new(1),
            load: watch::Sender::new(load),
            load_generated: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
            config,
        })
    }

    fn fresh_rules(config: &Config, now: Micros) -> RuleState {
        RuleState {
            windows: IdentifyWindows::new(config.identify_window_ms, config.max_concurrency),
            budget: Budget::new(
                config.session_start_limit,
                config.initial_remaining(),
                config.budget_reset_ms,
                now,
            ),
            token_reset: false,
        }
    }

    fn sessions_read(&self) -> std::sync::RwLockReadGuard<'_, Sessions> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions_write(&self) -> std::sync::RwLockWriteGuard<'_, Sessions> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the token was reset by an exhausted budget (REST answers 401 from then on).
    pub fn token_reset(&self) -> bool {
        lock(&self.rules).token_reset
    }

    /// Whether a REST `Authorization` header is accepted.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        !self.token_reset() && rules::authorization_matches(self.config.token.as_deref(), header)
    }

    /// `session_start_limit` now.
    pub fn budget(&self) -> BudgetInfo {
        let now = self.clock.now_us();
        let mut rules = lock(&self.rules);
        BudgetInfo {
            total: rules.budget.total,
            remaining: rules.budget.remaining(now),
            reset_after: rules.budget.reset_after_ms(now),
            max_concurrency: self.config.max_concurrency.max(1),
        }
    }

    /// Overrides the remaining session starts.
    pub fn set_budget_remaining(&self, remaining: u32) {
        let now = self.clock.now_us();
        lock(&self.rules).budget.set_remaining(remaining, now);
    }

    // ---- connections ----

    /// Registers a new connection; returns its number and its command queue.
    pub fn connect(&self) -> (u64, mpsc::UnboundedReceiver<Command>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.connections).insert(
            id,
            ConnectionHandle {
                commands: tx,
                session: None,
            },
        );
        add(&self.stats.connections_total, 1);
        add(&self.stats.connections_open, 1);
        (id, rx)
    }

    fn set_connection_session(&self, connection: u64, session: Option<Arc<Session>>) {
        if let Some(handle) = lock(&self.connections).get_mut(&connection) {
            handle.session = session;
        }
    }

    /// A connection ended, by a close with `code` (either side) or a drop (`None`). Its session,
    /// if still attached to it, stays resumable or ends as the close code says.
    pub fn disconnect(&self, connection: u64, session: Option<&Arc<Session>>, code: Option<u16>) {
        lock(&self.connections).remove(&connection);
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
        if let Some(session) = session {
            self.release(connection, session, code);
        }
    }

    /// Detaches a session from a connection that is closing with `code` (or dropped: `None`):
    /// it stays resumable or ends as the close code says.
    pub fn release(&self, connection: u64, session: &Arc<Session>, code: Option<u16>) {
        self.set_connection_session(connection, None);
        let now = self.clock.now_us();
        let end = {
            let mut state = session.state();
            if state.link != Link::Attached(connection) {
                return;
            }
            if rules::session_survives_close(code) {
                state.link = Link::Detached(now);
                false
            } else {
                state.link = Link::Ended;
                true
            }
        };
        if end {
            self.sessions_write().remove(session);
        }
    }

    /// Ends a session at once (op 9 `false`, expiry, reset).
    pub fn end_session(&self, session: &Session) {
        session.state().link = Link::Ended;
        self.sessions_write().remove(session);
    }

    /// Drops sessions whose resume window has passed; returns how many.
    pub fn expire_sessions(&self) -> usize {
        let now = self.clock.now_us();
        let window = self.config.resume_window_ms * US_PER_MS;
        let expired: Vec<Arc<Session>> = self
            .sessions_read()
            .by_id
            .values()
            .filter(
                |s| matches!(s.state().link, Link::Detached(at) if now.saturating_sub(at) > window),
            )
            .cloned()
            .collect();
        for session in &expired {
            self.end_session(session);
        }
        expired.len()
    }

    // ---- logs ----

    /// Records a breach.
    pub fn violation(&self, rule: Rule, origin: Origin<'_>, details: impl Into<String>) {
        let details = details.into();
        let shard = origin
            .session
            .map(|s| [s.shard, s.num_shards])
            .or(origin.shard);
        tracing::warn!(
            rule = ?rule,
            connection = origin.connection,
            shard_id = shard.map(|s| s[0]),
            shard_total = shard.map(|s| s[1]),
            "violation: {details}"
        );
        add(&self.stats.violations, 1);
        let mut logs = lock(&self.logs);
        if logs.violations.len() < LOG_CAPACITY {
            logs.violations.push(Violation {
                rule,
                at_ms: self.clock.now_ms(),
                shard: shard.map(|s| s[0]),
                num_shards: shard.map(|s| s[1]),
                session_id: origin.session.map(|s| s.id.clone()),
                connection: origin.connection,
                details,
            });
        }
    }

    fn breach(&self, breach: &Breach, origin: Origin<'_>) {
        self.violation(breach.rule, origin, breach.details.clone());
    }

    #[allow(clippy::too_many_arguments)]
    fn log_identify(
        &self,
        at: Micros,
        shard: [u32; 2],
        outcome: IdentifyOutcome,
        close_code: Option<u16>,
        session_id: Option<String>,
        connection: u64,
    ) {
        add(&self.stats.identifies, 1);
        let mut logs = lock(&self.logs);
        if logs.identifies.len() < LOG_CAPACITY {
            logs.identifies.push(IdentifyRecord {
                at_ms: at / US_PER_MS,
                at_us: at,
                shard: shard[0],
                num_shards: shard[1],
                bucket: rules::bucket(shard[0], self.config.max_concurrency),
                outcome,
                close_code,
                session_id,
                connection,
            });
        }
    }

    // ---- Identify and Resume ----

    /// Applies every Identify rule to an Identify that arrived at `at` on `connection`.
    pub fn identify(
        self: &Arc<Self>,
        connection: u64,
        fields: &IdentifyFields,
        at: Micros,
        resume_gateway_url: &str,
    ) -> IdentifyVerdict {
        let now = self.clock.now_us();
        let asked = fields
            .shard
            .map(|[s, n]| {
                [
                    s.min(u64::from(u32::MAX)) as u32,
                    n.min(u64::from(u32::MAX)) as u32,
                ]
            })
            .unwrap_or([0, 1]);
        let origin = Origin {
            connection,
            session: None,
            shard: Some(asked),
        };
        let mut rules = lock(&self.rules);
        let policy = IdentifyPolicy {
            token: self.config.token.as_deref(),
            token_reset: rules.token_reset,
            privileged_allowed: self.bot.privileged_intents,
            guilds: self.config.guilds,
            max_guilds_per_shard: self.config.max_guilds_per_shard,
            shard_multiple: self.config.shard_multiple,
        };
        let valid = match rules::validate_identify(fields, &policy) {
            Ok(valid) => valid,
            Err(breach) => {
                drop(rules);
                let code = breach.close.unwrap_or(CloseCode::UnknownError);
                self.log_identify(
                    at,
                    asked,
                    IdentifyOutcome::Closed,
                    Some(code.code()),
                    None,
                    connection,
                );
                self.breach(&breach, origin);
                return IdentifyVerdict::Close(code, breach.details);
            }
        };
        let shard = [valid.shard_id, valid.num_shards];
        if let Err(too_fast) = rules.windows.check(valid.shard_id, at) {
            drop(rules);
            self.log_identify(
                at,
                shard,
                IdentifyOutcome::InvalidSession,
                None,
                None,
                connection,
            );
            self.violation(
                Rule::IdentifyTooFast,
                origin,
                format!(
                    "bucket {} (shard {} % max_concurrency {}): Identify arrived {:.3} ms after the \
                     bucket's previous one; the window is {} ms",
                    too_fast.bucket,
                    valid.shard_id,
                    self.config.max_concurrency,
                    too_fast.gap as f64 / US_PER_MS as f64,
                    self.config.identify_window_ms
                ),
            );
            return IdentifyVerdict::InvalidSession;
        }
        if rules.budget.spend(now) == Spend::Exhausted {
            rules.token_reset = true;
            drop(rules);
            let code = CloseCode::AuthenticationFailed;
            self.log_identify(
                at,
                shard,
                IdentifyOutcome::Closed,
                Some(code.code()),
                None,
                connection,
            );
            self.violation(
                Rule::BudgetExhausted,
                origin,
                format!(
                    "Identify with no session start left of {}: every session is terminated and \
                     the token is reset",
                    self.config.session_start_limit
                ),
            );
            self.terminate_everything(connection);
            return IdentifyVerdict::Close(
                code,
                "session start limit exhausted; token reset".into(),
            );
        }
        rules.windows.record(valid.shard_id, at);
        drop(rules);

        let session_id = format!("{:032x}", rand::rng().random::<u128>());
        let guilds =
            world::guild_count_on_shard(self.config.guilds, valid.shard_id, valid.num_shards);
        let capacity = self.config.replay_buffer.max(guilds as usize + 16);
        let session = Arc::new(Session::new(
            session_id.clone(),
            shard,
            rules::bucket(valid.shard_id, self.config.max_concurrency),
            valid.intents,
            valid.large_threshold,
            guilds,
            now / US_PER_MS,
            capacity,
            connection,
        ));
        let ready = payloads::ready(
            &self.bot,
            &session_id,
            resume_gateway_url,
            shard,
            world::guilds_on_shard(self.config.guilds, valid.shard_id, valid.num_shards),
        );
        let guild_creates = (valid.intents & rules::INTENT_GUILDS != 0)
            .then(|| world::guilds_on_shard(self.config.guilds, valid.shard_id, valid.num_shards))
            .into_iter()
            .flatten()
            .map(Payload::GuildCreate);
        session.push_all(std::iter::once(Payload::Ready(Bytes::from(ready))).chain(guild_creates));
        self.sessions_write().insert(Arc::clone(&session));
        self.set_connection_session(connection, Some(Arc::clone(&session)));
        add(&self.stats.identifies_accepted, 1);
        self.log_identify(
            at,
            shard,
            IdentifyOutcome::Accepted,
            None,
            Some(session_id),
            connection,
        );
        IdentifyVerdict::Ready(session)
    }

    /// An Identify with no budget left: Discord terminates every session and resets the token.
    fn terminate_everything(&self, except: u64) {
        let sessions: Vec<Arc<Session>> = self.sessions_read().by_id.values().cloned().collect();
        for session in &sessions {
            self.end_session(session);
        }
        for (id, handle) in lock(&self.connections).iter() {
            if *id != except {
                let _ = handle.commands.send(Command::Close {
                    code: CloseCode::AuthenticationFailed.code(),
                    reason: "session start limit exhausted; token reset".into(),
                });
            }
        }
    }

    /// Applies the Resume rules to a Resume of `session_id` from `seq` on `connection`.
    pub fn resume(
        &self,
        connection: u64,
        token: &str,
        session_id: &str,
        seq: u64,
    ) -> ResumeOutcome {
        let now = self.clock.now_us();
        let fail = |outcome| {
            add(&self.stats.resumes_failed, 1);
            outcome
        };
        let token_reset = self.token_reset();
        if token_reset || !rules::token_matches(self.config.token.as_deref(), token) {
            let details = if token_reset {
                "Resume after the token was reset"
            } else {
                "Resume with a token that does not match"
            };
            self.violation(
                Rule::AuthenticationFailed,
                Origin {
                    connection,
                    ..Origin::default()
                },
                details,
            );
            return fail(ResumeOutcome::Close(
                CloseCode::AuthenticationFailed,
                details.into(),
            ));
        }
        let Some(session) = self.sessions_read().by_id.get(session_id).cloned() else {
            return fail(ResumeOutcome::Invalid);
        };
        let window = self.config.resume_window_ms * US_PER_MS;
        let mut state = session.state();
        let superseded = match state.link {
            Link::Ended => return fail(ResumeOutcome::Invalid),
            Link::Detached(at) if now.saturating_sub(at) > window => {
                drop(state);
                self.end_session(&session);
                return fail(ResumeOutcome::Invalid);
            }
            Link::Detached(_) => None,
            Link::Attached(other) => Some(other),
        };
        match rules::check_resume_seq(seq, state.seq, state.first_buffered()) {
            ResumeVerdict::Replay => {}
            ResumeVerdict::Invalid { breach } => {
                drop(state);
                if let Some(breach) = breach {
                    self.breach(
                        &breach,
                        Origin {
                            connection,
                            session: Some(&session),
                            shard: None,
                        },
                    );
                }
                return fail(ResumeOutcome::Invalid);
            }
        }
        state.link = Link::Attached(connection);
        state.resumes += 1;
        state.sent_seq = seq;
        let resumed_seq = Session::push_locked(&mut state, Payload::Resumed, session.capacity());
        drop(state);
        session.wake.notify_one();
        if let Some(other) = superseded
            && let Some(handle) = lock(&self.connections).get(&other)
        {
            let _ = handle.commands.send(Command::Superseded);
        }
        self.set_connection_session(connection, Some(Arc::clone(&session)));
        add(&self.stats.resumes, 1);
        ResumeOutcome::Resumed {
            session,
            resumed_seq,
        }
    }

    // ---- the world's events ----

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
    #[allow(clippy::too_many_arguments)]
    pub fn create_message(
        &self,
        guild: Option<u64>,
        channel_id: u64,
        author: Author,
        content: &str,
        reply_to: Option<u64>,
        track: bool,
        targets: &mut Vec<Arc<Session>>,
    ) -> (u64, Bytes) {
        let now = self.clock.now_us();
        let id = self.snowflakes.next(now / US_PER_MS);
        let timestamp = payloads::timestamp(now);
        let msg = Message {
            id,
            channel_id,
            guild_id: guild,
            author,
            content,
            timestamp: &timestamp,
            reply_to,
        };
        let intent = if guild.is_some() {
            rules::INTENT_GUILD_MESSAGES
        } else {
            rules::INTENT_DIRECT_MESSAGES
        };
        targets.clear();
        self.route(guild, intent, targets);
        // Content is withheld from bots without MESSAGE_CONTENT, except in DMs and their own
        // messages (message.mdx, "Message Content Intent").
        let withheld = guild.is_some() && author != Author::Bot;
        let serialize = |with_content: bool| {
            let mut d = Vec::with_capacity(content.len() + 900);
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

    /// Counts a bot reply to `target`.
    pub fn record_reply(&self, target: u64) -> bool {
        lock(&self.replies).reply(target)
    }

    /// The replies report of a period.
    pub fn replies_report(&self, since_ms: u64, until_ms: u64) -> crate::control::RepliesReport {
        lock(&self.replies).report(since_ms, until_ms)
    }

    // ---- faults ----

    /// Sends a fault to every matching connection; returns how many.
    pub fn inject(&self, request: &FaultRequest) -> u32 {
        let matches = |target: &Target, session: Option<&Arc<Session>>| {
            let any = target.session_id.is_none()
                && target.shard.is_none()
                && target.num_shards.is_none();
            any || session.is_some_and(|s| {
                target.session_id.as_ref().is_none_or(|id| *id == s.id)
                    && target.shard.is_none_or(|shard| shard == s.shard)
                    && target.num_shards.is_none_or(|n| n == s.num_shards)
            })
        };
        let mut affected = 0;
        for handle in lock(&self.connections).values() {
            if matches(&request.target, handle.session.as_ref())
                && handle
                    .commands
                    .send(Command::Fault(request.fault.clone()))
                    .is_ok()
            {
                affected += 1;
            }
        }
        affected
    }

    // ---- reports ----

    pub fn identifies(&self) -> Vec<IdentifyRecord> {
        lock(&self.logs).identifies.clone()
    }

    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.logs).violations.clone()
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let window = self.config.resume_window_ms;
        let mut list: Vec<SessionInfo> = self
            .sessions_read()
            .by_id
            .values()
            .map(|s| {
                let state = s.state();
                let (connected, connection, resumable_until_ms) = match state.link {
                    Link::Attached(c) => (true, Some(c), None),
                    Link::Detached(at) => (false, None, Some(at / US_PER_MS + window)),
                    Link::Ended => (false, None, None),
                };
                SessionInfo {
                    session_id: s.id.clone(),
                    shard: s.shard,
                    num_shards: s.num_shards,
                    bucket: s.bucket,
                    intents: s.intents,
                    seq: state.seq,
                    sent_seq: state.sent_seq,
                    ready: state.ready_sent,
                    connected,
                    connection,
                    resumable_until_ms,
                    guilds: s.guilds,
                    resumes: state.resumes,
                    buffered: state.buffer.len(),
                    created_at_ms: s.created_at_ms,
                }
            })
            .collect();
        list.sort_by(|a, b| {
            (a.num_shards, a.shard, a.created_at_ms).cmp(&(b.num_shards, b.shard, b.created_at_ms))
        });
        list
    }

    pub fn load_status(&self) -> LoadStatus {
        let settings = *self.load.borrow();
        LoadStatus {
            running: settings.rate > 0,
            settings,
            generated: get(&self.load_generated),
        }
    }

    pub fn counters(&self) -> Counters {
        let s = &self.stats;
        Counters {
            connections_open: get(&s.connections_open),
            connections_total: get(&s.connections_total),
            identifies: get(&s.identifies),
            identifies_accepted: get(&s.identifies_accepted),
            resumes: get(&s.resumes),
            resumes_failed: get(&s.resumes_failed),
            heartbeats: get(&s.heartbeats),
            dispatches_sent: get(&s.dispatches_sent),
            payload_bytes_sent: get(&s.payload_bytes_sent),
            wire_bytes_sent: get(&s.wire_bytes_sent),
            events_generated: get(&s.events_generated),
            overflows: get(&s.overflows),
            violations: get(&s.violations),
            sessions: self.sessions_read().by_id.len() as u64,
            token_reset: self.token_reset(),
            budget: Some(self.budget()),
        }
    }

    /// Back to a fresh start: every connection closed (4000), sessions, logs, counters, budget,
    /// bucket windows and token restored; the load stopped.
    pub fn reset(&self) {
        self.load.send_modify(|l| l.rate = 0);
        for handle in lock(&self.connections).values() {
            let _ = handle.commands.send(Command::Close {
                code: CloseCode::UnknownError.code(),
                reason: "fake reset".into(),
            });
        }
        let sessions: Vec<Arc<Session>> = self.sessions_read().by_id.values().cloned().collect();
        for session in &sessions {
            self.end_session(session);
        }
        *lock(&self.rules) = Self::fresh_rules(&self.config, self.clock.now_us());
        *lock(&self.logs) = Logs::default();
        *lock(&self.replies) = Replies::new(self.config.reply_tracking);
        let s = &self.stats;
        for counter in [
            &s.identifies,
            &s.identifies_accepted,
            &s.resumes,
            &s.resumes_failed,
            &s.heartbeats,
            &s.dispatches_sent,
            &s.payload_bytes_sent,
            &s.wire_bytes_sent,
            &s.events_generated,
            &s.overflows,
            &s.violations,
            &self.load_generated,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
