//! The fake's shared state. This file holds what the state is made of: the [`Fake`] every task
//! holds, with the data of each part (connection handles and their `Command`s, the Identify
//! rules' running state, the logs, the counters), and the reset to a fresh start. What the state
//! does lives beside it, an `impl Fake` block per part, each importing from here and never the
//! other way:
//! - `registry.rs`: the sessions by id and their routing index (data only);
//! - `connections.rs`: connections registered and ended, sessions detaching and expiring;
//! - `logs.rs`: recording Identifies, violations, commands and late heartbeats, and who a
//!   connection is (`Origin`);
//! - `admission.rs`: Identify and Resume (the rules of `rules.rs` applied to the live registry),
//!   the session start budget and the token;
//! - `events.rs`: the world's events, routed to the sessions that receive them, and the
//!   messages the bot creates (replies, nonces);
//! - `member_requests.rs`: op 8's answers and its bot-wide all-members limit;
//! - `faults.rs`: fault injection;
//! - `history.rs`: every session started and how it ended, and two live sessions of one shard;
//! - `reports.rs`: what the control API reports.

pub mod admission;
mod connections;
pub mod events;
mod faults;
mod history;
pub mod logs;
pub mod member_requests;
mod registry;
mod reports;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{mpsc, watch};

use self::registry::Sessions;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::{
    CommandRecord, Fault, IdentifyRecord, LateHeartbeat, LoadSettings, SessionEnd, SessionOverlap,
    Violation,
};
use crate::nonces::Nonces;
use crate::payloads::Bot;
use crate::replies::Replies;
use crate::rules::{self, ArrivalWindows, Budget, CloseCode, IdentifyWindows, Micros};
use crate::session::Session;
use crate::snowflake::Snowflakes;

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

/// The running state of the rules with memory: the Identify bucket windows, the session start
/// budget, whether exhausting the budget reset the token, and op 8's all-members window per
/// guild (bot-wide, like the budget).
#[derive(Debug)]
struct RuleState {
    windows: IdentifyWindows,
    budget: Budget,
    token_reset: bool,
    member_requests: ArrivalWindows<u64>,
}

impl RuleState {
    /// The rules' state at start, or after a reset.
    fn fresh(config: &Config, now: Micros) -> Self {
        Self {
            windows: IdentifyWindows::new(config.identify_window_ms, config.max_concurrency),
            budget: Budget::new(
                config.session_start_limit,
                config.initial_remaining(),
                config.budget_reset_ms,
                now,
            ),
            token_reset: false,
            member_requests: ArrivalWindows::new(config.member_request_window_ms),
        }
    }
}

/// The logs the control API reports.
#[derive(Debug, Default)]
struct Logs {
    identifies: Vec<IdentifyRecord>,
    violations: Vec<Violation>,
    commands: Vec<CommandRecord>,
    late_heartbeats: Vec<LateHeartbeat>,
    /// Every session started, in order (`/control/session_history`).
    sessions: Vec<Arc<Session>>,
    overlaps: Vec<SessionOverlap>,
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
    /// The longest an Identify waited between arriving and being judged, in µs (the fake's own
    /// lag under load; rules use the arrival, see `arrival.rs`).
    pub identify_lag_max_us: AtomicU64,
    pub commands: AtomicU64,
    pub heartbeats_late: AtomicU64,
    pub session_overlaps: AtomicU64,
    /// Sessions started (the history's length, beyond its cap).
    pub sessions_started: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
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
    /// Messages the bot created with `enforce_nonce`; held while such a create runs, so two
    /// creates with one nonce never both create.
    nonces: Mutex<Nonces>,
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
        let rules = RuleState::fresh(&config, now);
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
            nonces: Mutex::new(Nonces::new(config.nonce_window_ms)),
            next_connection: AtomicU64::new(1),
            load: watch::Sender::new(load),
            load_generated: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
            config,
        })
    }

    fn sessions_read(&self) -> RwLockReadGuard<'_, Sessions> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions_write(&self) -> RwLockWriteGuard<'_, Sessions> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Back to a fresh start: every connection closed (4000), sessions, logs, counters, budget,
    /// bucket and member-request windows, nonces and token restored; the load stopped.
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
            self.end_session(session, SessionEnd::Terminated);
        }
        *lock(&self.rules) = RuleState::fresh(&self.config, self.clock.now_us());
        *lock(&self.logs) = Logs::default();
        *lock(&self.replies) = Replies::new(self.config.reply_tracking);
        *lock(&self.nonces) = Nonces::new(self.config.nonce_window_ms);
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
            &s.commands,
            &s.heartbeats_late,
            &s.session_overlaps,
            &s.sessions_started,
            &self.load_generated,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
