//! One shard's gateway session as a pure state machine: `step(machine, input) -> actions`.
//!
//! The async loop in [`crate::shard`] owns the socket, the timers and the Identify permit; it
//! turns what happens into [`Input`]s and carries out the [`Action`]s this module returns. Every
//! rule of the lifecycle lives here, where paused-time unit tests can reach it
//! (discord-api-docs `developers/events/gateway.mdx`, "Connection Lifecycle"):
//!
//! - Hello → first heartbeat after `interval × random(0..1)`, then every interval; a server
//!   heartbeat request (op 1) is answered at once.
//! - No ACK before the next beat: a zombie connection ("Heartbeat Interval": "If a client does
//!   not receive a heartbeat ACK between its attempts at sending heartbeats, this may be due to
//!   a failed or 'zombied' connection"). Close with a code other than 1000/1001 and resume.
//!   [`SessionConfig::silent_beats`] lets a connection miss that many ACKs in a row first (the
//!   default, 1, is Discord's rule); dispatches do not excuse a missing ACK. So a connection that
//!   falls silent is closed at most `(silent_beats + 1) × interval` after its last ACK.
//! - No session: ask for the Identify permit (the bucket gate), then Identify on the gateway URL.
//!   A session: Resume, only on a connection to its `resume_gateway_url`.
//! - op 7 Reconnect (also before Hello) and resumable close codes: reconnect and Resume. op 9
//!   `true`: Resume; `false`: wait 1–5 s and Identify anew (through the gate again). A failed
//!   resume (op 9 `false`, 4007, 4009) forgets the session and its `resume_gateway_url`. Fatal
//!   codes: stop for good.
//! - Reconnects back off exponentially with jitter; the first one after a live session is
//!   immediate. Hello and READY/RESUMED have deadlines.
//! - Every Identify spends a session start, so Identifies that do not lead to a session lasting
//!   [`SessionConfig::stable_after`] are counted: each further Identify waits exponentially
//!   longer, and after [`SessionConfig::identify_loop_limit`] of them in a row the shard stops
//!   ([`Phase::IdentifyLoop`]) instead of draining the daily budget (op 9 `false` answered to
//!   every Identify, READY followed at once by 4007/4009, Identifies that never see READY).

mod config;
mod vocabulary;

use std::time::Duration;

pub use config::{DEFAULT_SILENT_BEATS, MAX_SILENT_BEATS, SessionConfig};
pub use vocabulary::{Action, Input, Phase, Resumable, Target};

use super::close_code::{self, CloseAction, RESUMABLE_CLOSE};

/// One shard's session state.
#[derive(Debug, Clone)]
pub struct Machine {
    config: SessionConfig,
    phase: Phase,
    resumable: Option<Resumable>,
    /// Where the current (or last) connection went: a Resume is sent only on a connection to
    /// the session's `resume_gateway_url`.
    connection: Option<Target>,
    /// Last sequence number received (0: none yet in this session).
    seq: u64,
    heartbeat_interval: Option<Duration>,
    /// Heartbeats sent on this connection since its last ACK.
    unacked_beats: u32,
    /// Connection attempts since the last live session.
    attempt: u32,
    /// Identifies sent since the last session that lasted `stable_after`.
    identify_streak: u32,
    rng: u64,
}

impl Machine {
    /// A machine that resumes `resumable` (a saved session) or identifies, seeded for jitter.
    pub fn new(config: SessionConfig, resumable: Option<(Resumable, u64)>, seed: u64) -> Self {
        let (resumable, seq) = match resumable {
            Some((r, seq)) => (Some(r), seq),
            None => (None, 0),
        };
        Self {
            config,
            phase: Phase::Idle,
            resumable,
            connection: None,
            seq,
            heartbeat_interval: None,
            unacked_beats: 0,
            attempt: 0,
            identify_streak: 0,
            rng: splitmix(seed) | 1,
        }
    }

    /// The same machine, counting `streak` Identifies of earlier processes that led to no
    /// lasting session (a pod that crashed after READY and restarted): the guard's wait, or its
    /// stop, applies before this process's first Identify too.
    pub fn with_identify_streak(mut self, streak: u32) -> Self {
        self.identify_streak = streak;
        self
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn resumable(&self) -> Option<&Resumable> {
        self.resumable.as_ref()
    }

    /// Last sequence number received.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    /// Identifies sent since the last session that lasted `stable_after`.
    pub fn identify_streak(&self) -> u32 {
        self.identify_streak
    }

    /// A uniform random number in `[0, 1)` (xorshift64*: enough for jitter).
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The delay before connection attempt number `attempt` (0: immediate).
    fn backoff(&mut self) -> Duration {
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        if attempt == 0 {
            return Duration::ZERO;
        }
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1 << (attempt - 1).min(16));
        let capped = exp.min(self.config.backoff_max);
        capped.mul_f64(0.5 + 0.5 * self.random())
    }

    /// The least wait before the next Identify: zero after a lasting session, else
    /// `identify_backoff_base × 2^(streak − 1)` (capped), with jitter in its upper half.
    fn identify_backoff(&mut self) -> Duration {
        if self.identify_streak == 0 {
            return Duration::ZERO;
        }
        let exp = self
            .config
            .identify_backoff_base
            .saturating_mul(1 << (self.identify_streak - 1).min(16));
        let capped = exp.min(self.config.identify_backoff_max);
        capped.mul_f64(0.5 + 0.5 * self.random())
    }

    fn target(&self) -> Target {
        match &self.resumable {
            Some(r) => Target::Resume(r.resume_gateway_url.clone()),
            None => Target::Gateway,
        }
    }

    /// Opens a connection to where the session needs one (remembered for Hello).
    fn connect(&mut self) -> Action {
        let target = self.target();
        self.connection = Some(target.clone());
        Action::Connect(target)
    }

    /// Whether the current connection went to the session's `resume_gateway_url`.
    fn on_resume_url(&self, session: &Resumable) -> bool {
        matches!(&self.connection, Some(Target::Resume(url)) if *url == session.resume_gateway_url)
    }

    /// Drops the connection (if any) and schedules the next one after `wait`. When the next
    /// connection must Identify after Identifies that led to no lasting session, it waits at
    /// least the Identify backoff, or the shard stops once the streak reached the limit.
    fn reconnect_after(&mut self, code: Option<u16>, mut wait: Duration) -> Vec<Action> {
        let mut actions = Vec::with_capacity(5);
        if self.phase == Phase::AwaitingPermit {
            actions.push(Action::CancelPermit);
        }
        if let Some(code) = code {
            actions.push(Action::Disconnect { code });
        }
        actions.push(Action::DisarmHeartbeat);
        self.heartbeat_interval = None;
        self.unacked_beats = 0;
        if self.resumable.is_none() && self.identify_streak > 0 {
            if self.identify_streak >= self.config.identify_loop_limit.max(1) {
                self.phase = Phase::IdentifyLoop;
                actions.push(Action::ClearDeadline);
                actions.push(Action::Stop { code: None });
                return actions;
            }
            wait = wait.max(self.identify_backoff());
        }
        if wait.is_zero() {
            self.phase = Phase::Connecting;
            actions.push(Action::ClearDeadline);
            actions.push(self.connect());
        } else {
            self.phase = Phase::Backoff;
            actions.push(Action::SetDeadline(wait));
        }
        actions
    }

    fn reconnect_with_backoff(&mut self, code: Option<u16>) -> Vec<Action> {
        let wait = self.backoff();
        self.reconnect_after(code, wait)
    }

    /// The deadline of a session that just went live: none when no Identify is in question,
    /// else `stable_after`, when the streak of Identifies starts over.
    fn stability_deadline(&self) -> Action {
        if self.identify_streak == 0 {
            Action::ClearDeadline
        } else {
            Action::SetDeadline(self.config.stable_after)
        }
    }

    /// READY or RESUMED: dispatches flow, and the next reconnect is immediate.
    fn go_live(&mut self, resumed: bool) -> Vec<Action> {
        self.phase = Phase::Active;
        self.attempt = 0;
        vec![self.stability_deadline(), Action::SessionLive { resumed }]
    }

    fn forget_session(&mut self) {
        self.resumable = None;
        self.seq = 0;
    }

    /// Applies one input; returns what the loop must do, in order.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        use Phase::*;
        if matches!(self.phase, Fatal(_) | IdentifyLoop | Stopped) {
            return Vec::new();
        }
        match (self.phase, input) {
            (_, Input::Shutdown) => {
                let code = self
                    .phase
                    .connected()
                    .then_some(if self.resumable.is_some() {
                        RESUMABLE_CLOSE
                    } else {
                        close_code::SESSION_ENDING_CLOSE
                    });
                let mut actions = Vec::with_capacity(4);
                if self.phase == AwaitingPermit {
                    actions.push(Action::CancelPermit);
                }
                self.phase = Stopped;
                actions.extend([
                    Action::DisarmHeartbeat,
                    Action::ClearDeadline,
                    Action::Stop { code },
                ]);
                actions
            }
            // Nothing to resume after Identifies that did not last (in earlier processes): wait
            // the Identify backoff first, or stop at the limit.
            (Idle, Input::Start) if self.resumable.is_none() && self.identify_streak > 0 => {
                self.reconnect_after(None, Duration::ZERO)
            }
            (Idle, Input::Start) => {
                self.phase = Connecting;
                vec![self.connect()]
            }
            (Backoff, Input::Deadline) => {
                self.phase = Connecting;
                vec![self.connect()]
            }
            (Connecting, Input::Connected) => {
                self.phase = AwaitingHello;
                vec![Action::SetDeadline(self.config.hello_timeout)]
            }
            (Connecting, Input::ConnectFailed) => self.reconnect_with_backoff(None),
            (AwaitingHello, Input::Hello { heartbeat_interval }) => {
                self.heartbeat_interval = Some(heartbeat_interval);
                self.unacked_beats = 0;
                let resume_here = self.resumable.as_ref().map(|r| self.on_resume_url(r));
                if resume_here == Some(false) {
                    // A session, but this connection went elsewhere: a Resume belongs on the
                    // session's resume URL, and an Identify would spend a session start.
                    return self.reconnect_after(Some(RESUMABLE_CLOSE), Duration::ZERO);
                }
                let first = heartbeat_interval.mul_f64(self.random());
                let mut actions = vec![Action::ArmHeartbeat(first)];
                match &self.resumable {
                    Some(r) => {
                        self.phase = Resuming;
                        actions.push(Action::SendResume {
                            session_id: r.session_id.clone(),
                            seq: self.seq,
                        });
                        actions.push(Action::SetDeadline(self.config.ready_timeout));
                    }
                    None => {
                        self.phase = AwaitingPermit;
                        actions.push(Action::ClearDeadline);
                        actions.push(Action::RequestPermit);
                    }
                }
                actions
            }
            (AwaitingHello | Identifying | Resuming, Input::Deadline) => {
                self.reconnect_with_backoff(Some(RESUMABLE_CLOSE))
            }
            (AwaitingPermit, Input::PermitGranted) => {
                self.phase = Identifying;
                self.identify_streak = self.identify_streak.saturating_add(1);
                vec![
                    Action::SendIdentify,
                    Action::SetDeadline(self.config.ready_timeout),
                ]
            }
            (_, Input::PermitGranted) => vec![Action::CancelPermit],
            (phase, Input::HeartbeatDue) if phase.heartbeating() => {
                if self.unacked_beats >= self.config.silent_beats.max(1) {
                    let mut actions = vec![Action::Zombie {
                        unacked: self.unacked_beats,
                        interval: self.heartbeat_interval.unwrap_or_default(),
                    }];
                    actions.extend(self.reconnect_with_backoff(Some(RESUMABLE_CLOSE)));
                    return actions;
                }
                self.unacked_beats = self.unacked_beats.saturating_add(1);
                let interval = self.heartbeat_interval.unwrap_or(Duration::from_secs(41));
                vec![
                    Action::SendHeartbeat {
                        seq: (self.seq > 0).then_some(self.seq),
                        requested: false,
                    },
                    Action::ArmHeartbeat(interval),
                ]
            }
            (phase, Input::HeartbeatRequest) if phase.connected() => {
                vec![Action::SendHeartbeat {
                    seq: (self.seq > 0).then_some(self.seq),
                    requested: true,
                }]
            }
            (_, Input::HeartbeatAck) => {
                self.unacked_beats = 0;
                Vec::new()
            }
            (phase, Input::Dispatch { seq }) if phase.connected() => {
                self.seq = seq;
                Vec::new()
            }
            (Identifying, Input::Ready(resumable)) => {
                self.resumable = Some(resumable);
                self.go_live(false)
            }
            (Resuming, Input::Resumed) => self.go_live(true),
            // The session lasted `stable_after`: the Identifies that led to it worked.
            (Active, Input::Deadline) => {
                self.identify_streak = 0;
                vec![Action::ForgetIdentifyStreak]
            }
            (phase, Input::Reconnect) if phase.connected() => {
                self.reconnect_with_backoff(Some(RESUMABLE_CLOSE))
            }
            (phase, Input::InvalidSession { resumable }) if phase.connected() => {
                if resumable && self.resumable.is_some() {
                    self.reconnect_with_backoff(Some(RESUMABLE_CLOSE))
                } else {
                    self.forget_session();
                    let (low, high) = self.config.invalid_session_wait;
                    let wait = low + (high.saturating_sub(low)).mul_f64(self.random());
                    self.reconnect_after(Some(RESUMABLE_CLOSE), wait)
                }
            }
            (phase, Input::Closed { code }) if phase.connected() => {
                match close_code::action(code) {
                    CloseAction::Fatal => {
                        let code = code.unwrap_or_default();
                        let mut actions = Vec::with_capacity(4);
                        if phase == AwaitingPermit {
                            actions.push(Action::CancelPermit);
                        }
                        self.phase = Fatal(code);
                        actions.extend([
                            Action::DisarmHeartbeat,
                            Action::ClearDeadline,
                            Action::Stop { code: None },
                        ]);
                        actions
                    }
                    CloseAction::Reidentify => {
                        self.forget_session();
                        self.reconnect_with_backoff(None)
                    }
                    CloseAction::Resume => self.reconnect_with_backoff(None),
                }
            }
            // Anything else is stale (a timer that fired after the phase moved on): ignore it.
            _ => Vec::new(),
        }
    }
}

/// Spreads any seed (even 0, 1, 2, …) over the whole state space of the xorshift generator.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(41_250);

    fn session() -> Resumable {
        Resumable {
            session_id: "abc".into(),
            resume_gateway_url: "ws://resume".into(),
        }
    }

    /// A machine driven to Active through Identify.
    fn active() -> Machine {
        let mut m = Machine::new(SessionConfig::default(), None, 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        m.step(Input::PermitGranted);
        m.step(Input::Dispatch { seq: 1 });
        m.step(Input::Ready(session()));
        assert_eq!(m.phase(), Phase::Active);
        m
    }

    #[test]
    fn identifies_only_with_the_permit() {
        let mut m = Machine::new(SessionConfig::default(), None, 7);
        assert_eq!(m.step(Input::Start), vec![Action::Connect(Target::Gateway)]);
        assert_eq!(
            m.step(Input::Connected),
            vec![Action::SetDeadline(Duration::from_secs(20))]
        );
        let actions = m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        assert!(matches!(actions[0], Action::ArmHeartbeat(d) if d < INTERVAL));
        assert!(actions.contains(&Action::RequestPermit));
        assert!(!actions.contains(&Action::SendIdentify));
        assert_eq!(m.phase(), Phase::AwaitingPermit);
        let actions = m.step(Input::PermitGranted);
        assert_eq!(actions[0], Action::SendIdentify);
        m.step(Input::Dispatch { seq: 1 });
        let actions = m.step(Input::Ready(session()));
        assert!(actions.contains(&Action::SessionLive { resumed: false }));
    }

    #[test]
    fn a_saved_session_resumes_without_a_permit() {
        let mut m = Machine::new(SessionConfig::default(), Some((session(), 42)), 7);
        assert_eq!(
            m.step(Input::Start),
            vec![Action::Connect(Target::Resume("ws://resume".into()))]
        );
        m.step(Input::Connected);
        let actions = m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        assert!(actions.contains(&Action::SendResume {
            session_id: "abc".into(),
            seq: 42
        }));
        assert!(!actions.contains(&Action::RequestPermit));
        let actions = m.step(Input::Resumed);
        assert!(actions.contains(&Action::SessionLive { resumed: true }));
    }

    #[test]
    fn first_heartbeat_is_jittered_then_regular() {
        let mut firsts = Vec::new();
        for seed in 1..50 {
            let mut m = Machine::new(SessionConfig::default(), None, seed);
            m.step(Input::Start);
            m.step(Input::Connected);
            let actions = m.step(Input::Hello {
                heartbeat_interval: INTERVAL,
            });
            let Action::ArmHeartbeat(first) = actions[0] else {
                panic!("{actions:?}")
            };
            assert!(first < INTERVAL);
            firsts.push(first);
        }
        firsts.sort();
        firsts.dedup();
        assert!(firsts.len() > 40, "jitter differs per seed");
        let mut m = active();
        assert_eq!(
            m.step(Input::HeartbeatDue),
            vec![
                Action::SendHeartbeat {
                    seq: Some(1),
                    requested: false
                },
                Action::ArmHeartbeat(INTERVAL)
            ]
        );
    }

    #[test]
    fn a_missed_ack_is_a_zombie_that_resumes() {
        let mut m = active();
        m.step(Input::HeartbeatDue);
        let actions = m.step(Input::HeartbeatDue);
        assert_eq!(
            actions[0],
            Action::Zombie {
                unacked: 1,
                interval: INTERVAL
            }
        );
        assert!(actions.contains(&Action::Disconnect {
            code: RESUMABLE_CLOSE
        }));
        assert!(actions.contains(&Action::Connect(Target::Resume("ws://resume".into()))));
        // An ACK in time keeps the connection.
        let mut m = active();
        m.step(Input::HeartbeatDue);
        m.step(Input::HeartbeatAck);
        assert!(matches!(
            m.step(Input::HeartbeatDue)[0],
            Action::SendHeartbeat { .. }
        ));
    }

    #[test]
    fn silent_beats_lets_that_many_acks_go_missing_and_dispatches_do_not_excuse_them() {
        let config = SessionConfig {
            silent_beats: 3,
            ..SessionConfig::default()
        };
        let mut m = Machine::new(config, Some((session(), 5)), 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        m.step(Input::Resumed);
        assert_eq!(m.phase(), Phase::Active);
        for beat in 1..=3 {
            let actions = m.step(Input::HeartbeatDue);
            assert!(
                matches!(actions[0], Action::SendHeartbeat { .. }),
                "beat {beat}: {actions:?}"
            );
            // Dispatches keep flowing: the connection is not silent for them, Discord's rule
            // is about ACKs.
            m.step(Input::Dispatch { seq: 5 + beat });
        }
        let actions = m.step(Input::HeartbeatDue);
        assert_eq!(
            actions[0],
            Action::Zombie {
                unacked: 3,
                interval: INTERVAL
            }
        );
        assert!(actions.contains(&Action::Disconnect {
            code: RESUMABLE_CLOSE
        }));
        // The first reconnect after a live session is immediate, to the resume URL.
        assert!(actions.contains(&Action::Connect(Target::Resume("ws://resume".into()))));

        // An ACK starts the count over.
        let mut m = Machine::new(
            SessionConfig {
                silent_beats: 2,
                ..SessionConfig::default()
            },
            Some((session(), 5)),
            7,
        );
        m.step(Input::Start);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        m.step(Input::Resumed);
        for _ in 0..2 {
            m.step(Input::HeartbeatDue);
        }
        m.step(Input::HeartbeatAck);
        for _ in 0..2 {
            assert!(matches!(
                m.step(Input::HeartbeatDue)[0],
                Action::SendHeartbeat { .. }
            ));
        }
        assert!(matches!(
            m.step(Input::HeartbeatDue)[0],
            Action::Zombie { unacked: 2, .. }
        ));
    }

    #[test]
    fn server_heartbeat_requests_are_answered_at_once() {
        let mut m = active();
        assert_eq!(
            m.step(Input::HeartbeatRequest),
            vec![Action::SendHeartbeat {
                seq: Some(1),
                requested: true
            }]
        );
    }

    #[test]
    fn op7_resumes_at_once_with_a_resumable_close() {
        let mut m = active();
        let actions = m.step(Input::Reconnect);
        assert_eq!(
            actions[0],
            Action::Disconnect {
                code: RESUMABLE_CLOSE
            }
        );
        assert!(actions.contains(&Action::Connect(Target::Resume("ws://resume".into()))));
    }

    #[test]
    fn invalid_session_true_resumes_false_waits_and_identifies() {
        let mut m = active();
        let actions = m.step(Input::InvalidSession { resumable: true });
        assert!(actions.contains(&Action::Connect(Target::Resume("ws://resume".into()))));

        let mut m = active();
        let actions = m.step(Input::InvalidSession { resumable: false });
        let wait = actions
            .iter()
            .find_map(|a| match a {
                Action::SetDeadline(d) => Some(*d),
                _ => None,
            })
            .expect("a wait");
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(5)).contains(&wait),
            "{wait:?}"
        );
        assert_eq!(m.phase(), Phase::Backoff);
        assert!(m.resumable().is_none());
        assert_eq!(
            m.step(Input::Deadline),
            vec![Action::Connect(Target::Gateway)]
        );
        m.step(Input::Connected);
        assert!(
            m.step(Input::Hello {
                heartbeat_interval: INTERVAL
            })
            .contains(&Action::RequestPermit)
        );
    }

    #[test]
    fn close_codes_follow_the_rules() {
        let mut m = active();
        let actions = m.step(Input::Closed { code: Some(4000) });
        assert!(actions.contains(&Action::Connect(Target::Resume("ws://resume".into()))));

        let mut m = active();
        let actions = m.step(Input::Closed { code: None });
        assert!(actions.contains(&Action::Connect(Target::Resume("ws://resume".into()))));

        let mut m = active();
        m.step(Input::Deadline); // the session lasted: its Identify is not in question
        let actions = m.step(Input::Closed { code: Some(4009) });
        assert!(actions.contains(&Action::Connect(Target::Gateway)));
        assert!(m.resumable().is_none());

        let mut m = active();
        let actions = m.step(Input::Closed { code: Some(4004) });
        assert!(actions.contains(&Action::Stop { code: None }));
        assert_eq!(m.phase(), Phase::Fatal(4004));
        // Nothing brings a fatal shard back.
        assert!(m.step(Input::Deadline).is_empty());
        assert!(m.step(Input::Start).is_empty());
    }

    #[test]
    fn failed_connects_back_off_exponentially_with_jitter() {
        let mut m = Machine::new(SessionConfig::default(), None, 3);
        m.step(Input::Start);
        let mut waits = Vec::new();
        // Attempt 0 already happened (Start); every failure then waits.
        for _ in 0..8 {
            let actions = m.step(Input::ConnectFailed);
            match actions.last() {
                Some(Action::SetDeadline(d)) => waits.push(*d),
                Some(Action::Connect(_)) => waits.push(Duration::ZERO),
                other => panic!("{other:?}"),
            }
            m.step(Input::Deadline);
        }
        assert_eq!(waits[0], Duration::ZERO, "first reconnect is immediate");
        for (i, wait) in waits.iter().enumerate().skip(1) {
            let full = Duration::from_secs(1 << (i - 1)).min(Duration::from_secs(60));
            assert!(*wait >= full / 2 && *wait <= full, "attempt {i}: {wait:?}");
        }
        // A live session resets the attempts.
        let mut m = active();
        let actions = m.step(Input::Closed { code: Some(4000) });
        assert!(matches!(actions.last(), Some(Action::Connect(_))));
    }

    #[test]
    fn hello_and_ready_timeouts_reconnect() {
        let mut m = Machine::new(SessionConfig::default(), None, 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        let actions = m.step(Input::Deadline);
        assert!(actions.contains(&Action::Disconnect {
            code: RESUMABLE_CLOSE
        }));
        let mut m = Machine::new(SessionConfig::default(), None, 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        m.step(Input::PermitGranted);
        let actions = m.step(Input::Deadline);
        assert!(actions.contains(&Action::Disconnect {
            code: RESUMABLE_CLOSE
        }));
    }

    #[test]
    fn shutdown_keeps_the_session_resumable_and_gives_back_a_waiting_permit() {
        let mut m = active();
        let actions = m.step(Input::Shutdown);
        assert!(actions.contains(&Action::Stop {
            code: Some(RESUMABLE_CLOSE)
        }));
        let mut m = Machine::new(SessionConfig::default(), None, 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        let actions = m.step(Input::Shutdown);
        assert_eq!(actions[0], Action::CancelPermit);
        assert!(actions.contains(&Action::Stop { code: Some(1000) }));
    }

    /// How an Identify fails in [`identify_loop`].
    #[derive(Clone, Copy)]
    enum Failure {
        /// op 9 `false` right after the Identify.
        InvalidSession,
        /// READY, then at once 4009 (session timed out: Identify anew).
        ReadyThen4009,
        /// No READY before the deadline.
        NoReady,
    }

    /// Runs the machine through Identifies that fail as `failure` says, on a virtual clock,
    /// until it stops or `max` Identifies were sent. Returns the clock time of each Identify.
    fn identify_loop(
        config: SessionConfig,
        failure: Failure,
        max: usize,
    ) -> (Machine, Vec<Duration>) {
        let mut m = Machine::new(config, None, 11);
        let mut clock = Duration::ZERO;
        let mut sent = Vec::new();
        let mut actions = m.step(Input::Start);
        while sent.len() < max {
            // Carry the machine to its next Identify: backoffs pass on the virtual clock.
            if let Some(Action::SetDeadline(wait)) = actions.last() {
                assert_eq!(m.phase(), Phase::Backoff, "{actions:?}");
                clock += *wait;
                actions = m.step(Input::Deadline);
            }
            if actions.contains(&Action::Stop { code: None }) {
                break;
            }
            assert!(
                matches!(actions.last(), Some(Action::Connect(Target::Gateway))),
                "{actions:?}"
            );
            m.step(Input::Connected);
            m.step(Input::Hello {
                heartbeat_interval: INTERVAL,
            });
            assert_eq!(m.step(Input::PermitGranted)[0], Action::SendIdentify);
            sent.push(clock);
            actions = match failure {
                Failure::InvalidSession => m.step(Input::InvalidSession { resumable: false }),
                Failure::ReadyThen4009 => {
                    m.step(Input::Dispatch { seq: 1 });
                    let live = m.step(Input::Ready(session()));
                    assert!(live.contains(&Action::SetDeadline(m.config.stable_after)));
                    m.step(Input::Closed { code: Some(4009) })
                }
                Failure::NoReady => m.step(Input::Deadline),
            };
        }
        (m, sent)
    }

    #[test]
    fn identifies_without_a_lasting_session_back_off_then_stop() {
        for failure in [
            Failure::InvalidSession,
            Failure::ReadyThen4009,
            Failure::NoReady,
        ] {
            let config = SessionConfig::default();
            let (m, sent) = identify_loop(config.clone(), failure, 100);
            assert_eq!(m.phase(), Phase::IdentifyLoop);
            assert_eq!(sent.len(), config.identify_loop_limit as usize);
            assert_eq!(m.identify_streak(), config.identify_loop_limit);
            // Each Identify after a failed one waits at least half of base × 2^(n − 1).
            for (n, pair) in sent.windows(2).enumerate() {
                let least = config.identify_backoff_base * (1 << n) / 2;
                assert!(pair[1] - pair[0] >= least, "Identify {}: {sent:?}", n + 2);
            }
            // Nothing brings it back; shutdown has nothing to close.
            assert!(m.clone().step(Input::Deadline).is_empty());
            assert!(m.clone().step(Input::Shutdown).is_empty());
        }
    }

    #[test]
    fn a_lasting_session_forgives_earlier_identifies() {
        let mut m = Machine::new(SessionConfig::default(), None, 5);
        for round in 0..20 {
            m.step(Input::Start);
            m.step(Input::Connected);
            m.step(Input::Hello {
                heartbeat_interval: INTERVAL,
            });
            m.step(Input::PermitGranted);
            assert_eq!(m.identify_streak(), 1, "round {round}");
            m.step(Input::Dispatch { seq: 1 });
            m.step(Input::Ready(session()));
            // The stability deadline passes: the Identify worked, and the count kept beyond
            // this process is forgotten too.
            assert_eq!(m.step(Input::Deadline), vec![Action::ForgetIdentifyStreak]);
            assert_eq!(m.identify_streak(), 0);
            // A later 4009 identifies again at once (the first reconnect after a live session).
            let actions = m.step(Input::Closed { code: Some(4009) });
            assert_eq!(actions.last(), Some(&Action::Connect(Target::Gateway)));
            m = Machine {
                phase: Phase::Idle,
                ..m
            };
        }
        // A resumed session that lasts counts too.
        let mut m = active();
        assert_eq!(m.identify_streak(), 1);
        m.step(Input::Closed { code: None });
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        let actions = m.step(Input::Resumed);
        assert!(actions.contains(&Action::SetDeadline(SessionConfig::default().stable_after)));
        m.step(Input::Deadline);
        assert_eq!(m.identify_streak(), 0);
    }

    #[test]
    fn identifies_of_earlier_processes_count_from_the_start() {
        let config = SessionConfig::default();
        let limit = config.identify_loop_limit;
        // At the limit (a pod that crashed after READY, restarted again and again): no Identify.
        let mut m = Machine::new(config.clone(), None, 9).with_identify_streak(limit);
        let actions = m.step(Input::Start);
        assert!(
            actions.contains(&Action::Stop { code: None }),
            "{actions:?}"
        );
        assert_eq!(m.phase(), Phase::IdentifyLoop);
        // Below it: the Identify backoff of that streak before connecting.
        let mut m = Machine::new(config.clone(), None, 9).with_identify_streak(2);
        let actions = m.step(Input::Start);
        assert_eq!(m.phase(), Phase::Backoff);
        assert!(
            matches!(actions.last(), Some(Action::SetDeadline(d)) if *d >= config.identify_backoff_base),
            "{actions:?}"
        );
        m.step(Input::Deadline);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        m.step(Input::PermitGranted);
        assert_eq!(
            m.identify_streak(),
            3,
            "this process's Identify adds to the count"
        );
        // A saved session is resumed at once: a Resume spends nothing.
        let mut m = Machine::new(config, Some((session(), 4)), 9).with_identify_streak(limit);
        assert_eq!(
            m.step(Input::Start),
            vec![Action::Connect(Target::Resume("ws://resume".into()))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_op9_loop_spends_at_most_the_limit_in_an_hour() {
        // The loop as the shard task runs it, on tokio's paused clock: every Identify is answered
        // with op 9 false. Before the guard this spent one session start every 1–5 s (~1,200 an
        // hour); now the limit, over about base × (2^limit − 1) s.
        let config = SessionConfig::default();
        let mut m = Machine::new(config.clone(), None, 3);
        let start = tokio::time::Instant::now();
        let mut identifies = 0;
        let mut actions = m.step(Input::Start);
        while start.elapsed() < Duration::from_secs(3_600) {
            let mut inputs = Vec::new();
            for action in actions.drain(..) {
                match action {
                    Action::Connect(_) => inputs.push(Input::Connected),
                    Action::SetDeadline(d) if m.phase() == Phase::Backoff => {
                        tokio::time::sleep(d).await;
                        inputs.push(Input::Deadline);
                    }
                    Action::RequestPermit => inputs.push(Input::PermitGranted),
                    Action::SendIdentify => {
                        identifies += 1;
                        inputs.push(Input::InvalidSession { resumable: false });
                    }
                    _ => {}
                }
            }
            if m.phase() == Phase::AwaitingHello {
                inputs.push(Input::Hello {
                    heartbeat_interval: INTERVAL,
                });
            }
            if inputs.is_empty() {
                break;
            }
            for input in inputs {
                actions.extend(m.step(input));
            }
        }
        assert_eq!(m.phase(), Phase::IdentifyLoop);
        assert_eq!(identifies, config.identify_loop_limit);
        assert!(start.elapsed() < Duration::from_secs(3_600));
    }

    #[test]
    fn a_permit_granted_after_the_connection_dropped_is_returned() {
        let mut m = Machine::new(SessionConfig::default(), None, 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        let actions = m.step(Input::Closed { code: None });
        assert_eq!(actions[0], Action::CancelPermit);
        assert_eq!(m.step(Input::PermitGranted), vec![Action::CancelPermit]);
    }

    /// A machine (with `saved`, if any) whose first connection just opened.
    fn connected(saved: Option<(Resumable, u64)>) -> Machine {
        let mut m = Machine::new(SessionConfig::default(), saved, 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        m
    }

    /// Hello on `m`'s connection.
    fn hello(m: &mut Machine) -> Vec<Action> {
        m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        })
    }

    #[test]
    fn op7_before_hello_reconnects_to_where_the_session_needs() {
        // No session: back to the gateway URL; nothing was sent, no permit was asked for.
        let mut m = connected(None);
        let actions = m.step(Input::Reconnect);
        assert_eq!(
            actions.first(),
            Some(&Action::Disconnect {
                code: RESUMABLE_CLOSE
            })
        );
        assert_eq!(actions.last(), Some(&Action::Connect(Target::Gateway)));
        m.step(Input::Connected);
        let actions = m.step(Input::Hello {
            heartbeat_interval: INTERVAL,
        });
        assert!(actions.contains(&Action::RequestPermit), "{actions:?}");
        // A session: back to its resume URL, and Resume there after Hello.
        let mut m = Machine::new(SessionConfig::default(), Some((session(), 9)), 7);
        m.step(Input::Start);
        m.step(Input::Connected);
        let actions = m.step(Input::Reconnect);
        assert_eq!(
            actions.last(),
            Some(&Action::Connect(Target::Resume("ws://resume".into())))
        );
        m.step(Input::Connected);
        let actions = hello(&mut m);
        assert!(actions.contains(&Action::SendResume {
            session_id: "abc".into(),
            seq: 9
        }));
    }

    #[test]
    fn a_failed_resume_forgets_the_resume_url() {
        for failure in [
            Input::InvalidSession { resumable: false },
            Input::Closed { code: Some(4007) },
            Input::Closed { code: Some(4009) },
        ] {
            let mut m = connected(Some((session(), 9)));
            hello(&mut m);
            assert_eq!(m.phase(), Phase::Resuming);
            let mut actions = m.step(failure.clone());
            assert!(m.resumable().is_none(), "{failure:?}");
            if m.phase() == Phase::Backoff {
                actions = m.step(Input::Deadline);
            }
            assert_eq!(
                actions.last(),
                Some(&Action::Connect(Target::Gateway)),
                "{failure:?}"
            );
            m.step(Input::Connected);
            let actions = hello(&mut m);
            assert!(actions.contains(&Action::RequestPermit), "{failure:?}");
        }
        // A resume that may be retried keeps the URL.
        for retry in [
            Input::InvalidSession { resumable: true },
            Input::Closed { code: Some(4000) },
            Input::Deadline,
        ] {
            let mut m = connected(Some((session(), 9)));
            hello(&mut m);
            let mut actions = m.step(retry.clone());
            if m.phase() == Phase::Backoff {
                actions = m.step(Input::Deadline);
            }
            assert_eq!(
                actions.last(),
                Some(&Action::Connect(Target::Resume("ws://resume".into()))),
                "{retry:?}"
            );
        }
    }

    #[test]
    fn a_session_is_never_resumed_on_a_connection_to_elsewhere() {
        // A machine whose connection went to the gateway URL while it holds a session (which
        // `connect` never does): Hello must not lead to a Resume there, nor to an Identify.
        let mut m = Machine::new(SessionConfig::default(), Some((session(), 9)), 7);
        m.step(Input::Start);
        m.connection = Some(Target::Gateway);
        m.step(Input::Connected);
        let actions = hello(&mut m);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SendResume { .. } | Action::RequestPermit)),
            "{actions:?}"
        );
        assert_eq!(
            actions.last(),
            Some(&Action::Connect(Target::Resume("ws://resume".into())))
        );
    }

    #[test]
    fn resumes_only_on_the_resume_url_and_identifies_only_on_the_gateway() {
        // Random inputs (deterministic per seed), with and without a saved session, READYs that
        // bring new resume URLs: every Resume goes on a connection to the session's current
        // resume URL, every Identify on one to the gateway URL.
        let mut resumes = 0;
        let mut identifies = 0;
        for seed in 0..300u64 {
            let saved = (seed % 2 == 0).then(|| (session(), 5));
            let mut m = Machine::new(SessionConfig::default(), saved, seed);
            let mut rng = splitmix(seed) | 1;
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut connection = None;
            let mut actions = m.step(Input::Start);
            for turn in 0..400u64 {
                for action in &actions {
                    match action {
                        Action::Connect(target) => connection = Some(target.clone()),
                        Action::SendResume { .. } => {
                            resumes += 1;
                            let url = &m.resumable().expect("a session").resume_gateway_url;
                            assert_eq!(
                                connection,
                                Some(Target::Resume(url.clone())),
                                "seed {seed}"
                            );
                        }
                        Action::SendIdentify => {
                            identifies += 1;
                            assert_eq!(connection, Some(Target::Gateway), "seed {seed}");
                        }
                        _ => {}
                    }
                }
                let input = match next(13) {
                    0 | 1 => Input::Connected,
                    2 => Input::ConnectFailed,
                    3 | 4 => Input::Hello {
                        heartbeat_interval: INTERVAL,
                    },
                    5 => Input::PermitGranted,
                    6 => Input::Ready(Resumable {
                        session_id: format!("s{turn}"),
                        resume_gateway_url: format!("ws://resume-{turn}"),
                    }),
                    7 => Input::Resumed,
                    8 => Input::Reconnect,
                    9 => Input::InvalidSession {
                        resumable: next(2) == 0,
                    },
                    10 => Input::Closed {
                        code: [None, Some(4000), Some(4007), Some(4009)][next(4) as usize],
                    },
                    11 => Input::Dispatch { seq: turn + 1 },
                    _ => Input::Deadline,
                };
                actions = m.step(input);
            }
        }
        assert!(
            resumes > 50 && identifies > 50,
            "{resumes} resumes, {identifies} identifies"
        );
    }
}
