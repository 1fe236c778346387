//! Admission of Identify and Resume: the rules of `rules.rs` applied to the live registry (token,
//! fields, bucket windows, the session start budget), the new session and its READY on success,
//! and what the budget and the token are now (`/gateway/bot`, REST authorization).

use std::sync::Arc;

use bytes::Bytes;
use rand::RngExt;

use super::logs::Origin;
use super::{Command, Fake, add, lock};
use crate::control::{BudgetInfo, IdentifyOutcome, Rule, SessionEnd};
use crate::payloads;
use crate::rules::{
    self, CloseCode, IdentifyFields, IdentifyPolicy, Micros, ResumeVerdict, Spend, US_PER_MS,
};
use crate::session::{Link, Payload, Session};
use crate::world;

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

impl Fake {
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
        self.record_session(&session);
        self.check_overlap(&session, connection);
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
            self.end_session(session, SessionEnd::Terminated);
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
                self.end_session(&session, SessionEnd::Expired);
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
        self.check_overlap(&session, connection);
        self.set_connection_session(connection, Some(Arc::clone(&session)));
        add(&self.stats.resumes, 1);
        ResumeOutcome::Resumed {
            session,
            resumed_seq,
        }
    }
}
