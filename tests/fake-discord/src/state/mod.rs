//! The fake's shared state: the [`Fake`] every task holds, its counters, and the reset to a fresh
//! start. The decisions that span connections are `impl Fake` blocks in the files beside this
//! one, one part of the state each:
//! - `registry.rs`: the sessions and their routing index;
//! - `connections.rs`: live connections, their command queues, sessions detaching and expiring;
//! - `logs.rs`: the Identify and violation logs;
//! - `admission.rs`: Identify and Resume (the rules of `rules.rs` applied to the live registry),
//!   the session start budget and the token;
//! - `events.rs`: the world's events, routed to the sessions that receive them;
//! - `faults.rs`: fault injection;
//! - `reports.rs`: what the control API reports.

mod admission;
mod connections;
mod events;
mod faults;
mod logs;
mod registry;
mod reports;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::watch;

use self::admission::RuleState;
pub use self::admission::{IdentifyVerdict, ResumeOutcome};
pub use self::connections::Command;
use self::connections::ConnectionHandle;
use self::logs::Logs;
pub use self::logs::Origin;
use self::registry::Sessions;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::LoadSettings;
use crate::payloads::Bot;
use crate::replies::Replies;
use crate::rules::{self, CloseCode};
use crate::session::Session;
use crate::snowflake::Snowflakes;

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
