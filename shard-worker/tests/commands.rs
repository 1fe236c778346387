//! The bot's gateway commands and the transport compression, end to end: a worker started with
//! `worker::Builder` in-process, a handler of the test's own that sends through
//! `Builder::commands()`, the fake Discord over real WebSockets (which records every command,
//! enforces the send limit and the 4,096-byte cap, answers op 8 with member chunks or
//! RATE_LIMITED, and notes late heartbeats) and a real redis-server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::cutter::Cutter;
use common::metrics::sample;
use common::scenario::{Scenario, wait_until};
use common::worker::{free_port, stop_in_process};
use fake_discord::Config;
use fake_discord::control::{CommandOutcome, CommandRecord, RecordFilter, Rule};
use fake_discord::world;
use redis::Commands as _;
use serde_json::json;
use shard_worker::command::{
    Activity, CommandConfig, CommandError, Commands, EncodeError, MemberRequest, Members, Presence,
    Status, VoiceState,
};
use shard_worker::handler::{Dispatch, Handler};
use shard_worker::worker::{Builder, Outcome, Settings};
use shardset_contract::Keys;
use shardset_contract::token::Token;
use tokio::sync::{mpsc, watch};

/// GUILDS | GUILD_MEMBERS (all-members requests need it) | GUILD_MESSAGES.
const INTENTS: u64 = 1 | 2 | 512;

/// A worker run with `worker::Builder`, and the handle its bot sends commands with.
struct Running {
    commands: Commands,
    listen: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Outcome, shard_worker::worker::StartError>>,
}

impl Running {
    /// Starts shards `0..total` of a `total` layout against `api_url`, with `flags` added; the
    /// handler is made from the worker's command handle.
    async fn start<H: Handler>(
        s: &Scenario,
        api_url: &str,
        total: u32,
        flags: &[&str],
        handler: impl FnOnce(Commands) -> Arc<H>,
    ) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "bot".to_owned(),
            "--shard-first=0".to_owned(),
            format!("--shard-last={}", total - 1),
            format!("--shard-total={total}"),
            format!("--redis-url={}", s.redis.url()),
            format!("--discord-api-url={api_url}"),
            format!(
                "--identify-window-ms={}",
                s.fake.state().config.identify_window_ms
            ),
            format!("--intents={INTENTS}"),
            format!("--listen={listen}"),
            "--pod=bot".to_owned(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let settings = Settings::try_parse_from(args).expect("settings");
        let worker = Builder::new(settings, Token::new("command-test-token"));
        let commands = worker.commands();
        let handler = handler(commands.clone());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(worker.run(handler, stop_rx));
        Self {
            commands,
            listen,
            stop,
            task,
        }
    }

    async fn metrics(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.listen)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn stop(self) -> Outcome {
        stop_in_process(&self.stop, self.task)
            .await
            .expect("the worker started")
    }
}

/// Waits until every shard of `total` has a live session on the fake.
async fn ready(s: &Scenario, total: u32) -> bool {
    wait_until(Duration::from_secs(30), || async {
        (0..total).all(|shard| s.live_session(shard).is_some())
    })
    .await
}

/// The fake of these scenarios: a 200 ms Identify window (shards start in a moment).
fn config() -> Config {
    Config {
        identify_window_ms: 200,
        ..Scenario::config()
    }
}

/// A fake with `config`, Redis, and a worker of one shard (flags `flags`) whose handler records
/// the events: once the shard is ready.
async fn one_shard(config: Config, flags: &[&str]) -> (Scenario, Arc<Events>, Running) {
    let s = Scenario::start_with(config).await;
    let events = Arc::new(Events::default());
    let running = Running::start(&s, &s.fake.api_url(), 1, flags, |_| Arc::clone(&events)).await;
    assert!(ready(&s, 1).await, "ready");
    (s, events, running)
}

/// The fake's record of the commands of `op` on `shard`.
fn commands_seen(s: &Scenario, shard: u32, op: u8) -> Vec<CommandRecord> {
    s.fake.state().commands(&RecordFilter {
        shard: Some(shard),
        op: Some(op),
        ..RecordFilter::default()
    })
}

/// The first of the fake's guilds routed to `shard` of `total`: its index and id.
fn guild_on(s: &Scenario, shard: u32, total: u32) -> (u32, u64) {
    let index = world::guilds_on_shard(s.fake.state().config.guilds, shard, total)
        .next()
        .expect("a guild on the shard");
    (index, world::guild_id(index))
}

/// Remembers the event names it handled, per shard.
#[derive(Default)]
struct Events(Mutex<Vec<(u32, String)>>);

impl Events {
    fn seen(&self, shard: u32, event: &str) -> usize {
        let events = self.0.lock().expect("events");
        events
            .iter()
            .filter(|(s, e)| *s == shard && e == event)
            .count()
    }

    fn record(&self, dispatch: &Dispatch<'_>) {
        self.0
            .lock()
            .expect("events")
            .push((dispatch.shard, dispatch.event.to_owned()));
    }
}

impl Handler for Events {
    async fn dispatch(&self, dispatch: Dispatch<'_>) {
        self.record(&dispatch);
    }
}

// ---------------------------------------------------------------------------------------------
// Transport compression.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_speaks_zstd_stream_by_default_and_zlib_stream_and_none_still_work() {
    let s = Scenario::start_with(config()).await;
    for (flags, query) in [
        (&[][..], Some("compress=zstd-stream")),
        (
            &["--gateway-compression=zlib-stream"][..],
            Some("compress=zlib-stream"),
        ),
        (&["--gateway-compression=none"][..], None),
    ] {
        s.fake.state().reset();
        let _: () = s.redis.conn().flushall().expect("flush");
        // Every request of the worker (REST and gateway) through a relay that notes what it
        // asks for: the gateway URL comes from /gateway/bot, built from the relay's address.
        let tap = Cutter::start(s.fake.addr().port()).await;
        let api_url = format!("http://127.0.0.1:{}/api", tap.port);
        let events = Arc::new(Events::default());
        let running = Running::start(&s, &api_url, 1, flags, |_| Arc::clone(&events)).await;
        assert!(ready(&s, 1).await, "{flags:?}: ready");
        s.set_load(200);
        assert!(
            wait_until(Duration::from_secs(10), || async {
                events.seen(0, "MESSAGE_CREATE") > 20
            })
            .await,
            "{flags:?}: dispatches decoded and handled"
        );
        s.set_load(0);
        running.stop().await;
        let upgrades: Vec<String> = tap
            .first_lines()
            .into_iter()
            .filter(|line| line.contains("encoding=json"))
            .collect();
        assert!(!upgrades.is_empty(), "{flags:?}: a gateway connection");
        for line in &upgrades {
            match query {
                Some(query) => assert!(line.contains(query), "{flags:?}: {line}"),
                None => assert!(!line.contains("compress="), "{flags:?}: {line}"),
            }
        }
        s.assert_no_violations();
    }
}

// ---------------------------------------------------------------------------------------------
// Commands from a handler.

/// What a command of `Bot` came back with: sent (or queued), members, or an error.
#[derive(Debug, Clone)]
enum Got {
    Done,
    Members(Members),
    Failed(CommandError),
}

impl Got {
    fn from<T>(result: Result<T, CommandError>, then: impl FnOnce(T) -> Self) -> Self {
        result.map_or_else(Self::Failed, then)
    }

    fn members(self) -> Members {
        match self {
            Self::Members(members) => members,
            other => panic!("{other:?}"),
        }
    }
}

/// What `Bot` got back for each command, by shard.
type Outcomes = mpsc::UnboundedSender<(u32, &'static str, Got)>;

/// A bot that, on each shard's READY, sets its presence there (inside the dispatch: queued),
/// and from a task of its own joins the voice channel of a guild on that shard and asks for
/// that guild's members (all of them, and two by id).
struct Bot {
    commands: Commands,
    guilds: u32,
    total: u32,
    events: Events,
    outcomes: Outcomes,
}

impl Handler for Bot {
    async fn dispatch(&self, dispatch: Dispatch<'_>) {
        self.events.record(&dispatch);
        if dispatch.event != "READY" {
            return;
        }
        let shard = dispatch.shard;
        let presence =
            Presence::new(Status::Dnd).activity(Activity::new(3, format!("shard {shard}")));
        let queued = self.commands.update_presence(shard, &presence).await;
        let _ = self
            .outcomes
            .send((shard, "presence", Got::from(queued, |()| Got::Done)));
        // An answer that can only come after this dispatch: refused at once, not a stall.
        let inline = self
            .commands
            .request_guild_members(shard, MemberRequest::all(1))
            .await;
        let _ = self
            .outcomes
            .send((shard, "inline members", Got::from(inline, Got::Members)));
        let index = world::guilds_on_shard(self.guilds, shard, self.total)
            .next()
            .expect("a guild");
        let guild = world::guild_id(index);
        let commands = self.commands.clone();
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            let voice = VoiceState {
                guild_id: guild,
                channel_id: Some(world::voice_channel_id(guild)),
                self_mute: false,
                self_deaf: true,
            };
            let joined = commands.update_voice_state(shard, &voice).await;
            let _ = outcomes.send((shard, "voice", Got::from(joined, |()| Got::Done)));
            let all = commands
                .request_guild_members(shard, MemberRequest::all(guild))
                .await;
            let _ = outcomes.send((shard, "all members", Got::from(all, Got::Members)));
            let member = match world::member_at(index, 1) {
                world::Person::User(n) => world::user_id(n),
                world::Person::Bot => unreachable!("position 1 is a user"),
            };
            let stranger = (0..world::USERS)
                .find(|n| !world::is_member(index, *n))
                .map(world::user_id)
                .expect("a user who is not a member");
            let two = commands
                .request_guild_members(shard, MemberRequest::users(guild, [member, stranger]))
                .await;
            let _ = outcomes.send((shard, "two members", Got::from(two, Got::Members)));
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sends_presence_voice_state_and_member_requests_and_the_fake_records_them() {
    const TOTAL: u32 = 2;
    let s = Scenario::start_with(config()).await;
    let guilds = s.fake.state().config.guilds;
    let (outcomes, mut results) = mpsc::unbounded_channel();
    let bot = Arc::new(std::sync::OnceLock::new());
    let running = Running::start(&s, &s.fake.api_url(), TOTAL, &[], |commands| {
        let made = Arc::new(Bot {
            commands,
            guilds,
            total: TOTAL,
            events: Events::default(),
            outcomes,
        });
        let _ = bot.set(Arc::clone(&made));
        made
    })
    .await;
    let mut got = Vec::new();
    while got.len() < 5 * TOTAL as usize {
        let next = tokio::time::timeout(Duration::from_secs(30), results.recv())
            .await
            .expect("every command answered in time")
            .expect("outcome");
        got.push(next);
    }
    for shard in 0..TOTAL {
        let outcome = |what: &str| {
            got.iter()
                .find(|(s, w, _)| *s == shard && *w == what)
                .map(|(_, _, r)| r.clone())
                .unwrap_or_else(|| panic!("shard {shard}: no {what}"))
        };
        assert!(
            matches!(outcome("presence"), Got::Done),
            "shard {shard}: queued"
        );
        assert!(
            matches!(outcome("inline members"), Got::Failed(CommandError::InsideDispatch { shard: s }) if s == shard)
        );
        assert!(matches!(outcome("voice"), Got::Done));
        let (index, guild) = guild_on(&s, shard, TOTAL);
        let all = outcome("all members").members();
        let count = world::member_count(index) as usize;
        assert_eq!(
            (all.guild_id, all.members.len()),
            (guild, count),
            "shard {shard}"
        );
        assert_eq!(
            all.chunks as usize,
            count.div_ceil(1_000),
            "one chunk per 1,000"
        );
        let two = outcome("two members").members();
        assert_eq!((two.members.len(), two.not_found.len()), (1, 1));

        // What the fake received, on this shard's session.
        let presence = commands_seen(&s, shard, 3);
        assert_eq!(presence.len(), 1, "shard {shard}: {presence:?}");
        assert_eq!(presence[0].d["status"], "dnd");
        assert_eq!(
            presence[0].d["activities"],
            json!([{"name": format!("shard {shard}"), "type": 3}])
        );
        let voice = commands_seen(&s, shard, 4);
        assert_eq!(voice.len(), 1);
        assert_eq!(voice[0].d["guild_id"], guild.to_string());
        assert_eq!(voice[0].outcome, CommandOutcome::Accepted);
        let members = commands_seen(&s, shard, 8);
        assert_eq!(
            members.len(),
            2,
            "the inline request never left: {members:?}"
        );
        assert!(
            members
                .iter()
                .all(|m| m.outcome == CommandOutcome::Answered)
        );
        assert!(members.iter().all(|m| m.d["nonce"].is_string()));
    }
    // The chunks were the handler's too (a member cache may want them).
    let bot = bot.get().expect("the bot");
    for shard in 0..TOTAL {
        assert!(bot.events.seen(shard, "GUILD_MEMBERS_CHUNK") >= 2);
    }
    let metrics = running.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"shardset_worker_commands_total{opcode="8",outcome="answered"}"#
        ),
        Some(f64::from(2 * TOTAL))
    );
    running.stop().await;
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_commands_at_once_keep_under_the_send_limit_and_never_delay_a_heartbeat() {
    // Time scaled 30×: 120 commands per 2 s, a 1 s heartbeat interval, and a heartbeat late
    // when it comes 400 ms after its time.
    let (s, _events, running) = one_shard(
        Config {
            send_window_ms: 2_000,
            heartbeat_interval_ms: 1_000,
            heartbeat_slack_ms: 400,
            ..config()
        },
        &["--gateway-send-window-ms=2000"],
    )
    .await;
    let connections = s.fake.state().counters().connections_total;
    let started = tokio::time::Instant::now();
    let sends = (0..500u32).map(|i| {
        let commands = running.commands.clone();
        tokio::spawn(async move {
            let presence =
                Presence::new(Status::Online).activity(Activity::new(0, format!("#{i}")));
            commands.update_presence(0, &presence).await
        })
    });
    let results = futures_util::future::join_all(sends).await;
    let took = started.elapsed();
    for result in results {
        assert_eq!(result.expect("task"), Ok(()));
    }
    // Sent means written to the socket; the fake records each when it reads it.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            commands_seen(&s, 0, 3).len() == 500
        })
        .await,
        "{} of 500 recorded",
        commands_seen(&s, 0, 3).len()
    );
    // Spread over the windows: at most 116 ordinary commands per 2.05 s (heartbeats keep the
    // rest), so 500 take at least four more windows after the first.
    assert!(took >= Duration::from_secs(8), "spread over {took:?}");
    // Heartbeats went on through it (two more intervals after the last command).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let late = s.fake.state().late_heartbeats(&RecordFilter::default());
    assert!(late.is_empty(), "late heartbeats: {late:?}");
    assert_eq!(
        s.fake.state().counters().connections_total,
        connections,
        "never closed (4008) nor reconnected"
    );
    s.assert_no_violations();
    let metrics = running.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"shardset_worker_commands_total{opcode="3",outcome="sent"}"#
        ),
        Some(500.0)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_command_is_refused_before_sending() {
    let (s, _events, running) = one_shard(config(), &[]).await;
    let connections = s.fake.state().counters().connections_total;
    let long = Presence::new(Status::Online).activity(Activity::new(0, "x".repeat(4_100)));
    match running.commands.update_presence(0, &long).await {
        Err(CommandError::Refused(EncodeError::TooLarge { bytes })) => assert!(bytes > 4_096),
        other => panic!("{other:?}"),
    }
    let raw = running
        .commands
        .send_raw(
            0,
            43u8,
            &json!({"guild_ids": ["1"], "pad": "y".repeat(4_096)}),
        )
        .await;
    assert!(matches!(
        raw,
        Err(CommandError::Refused(EncodeError::TooLarge { .. }))
    ));
    // The same shard still sends what fits (a raw opcode the worker does not model included).
    let (_, guild) = guild_on(&s, 0, 1);
    running
        .commands
        .send_raw(
            0,
            43u8,
            &json!({"guild_id": guild.to_string(), "fields": ["status"]}),
        )
        .await
        .expect("a raw op 43 fits");
    assert!(
        wait_until(Duration::from_secs(5), || async {
            commands_seen(&s, 0, 43).len() == 1
        })
        .await,
        "op 43 recorded"
    );
    assert!(
        commands_seen(&s, 0, 3).is_empty(),
        "nothing oversize reached the fake"
    );
    assert_eq!(s.fake.state().counters().connections_total, connections);
    s.assert_no_violations(); // no 4002
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_all_members_request_within_30_s_returns_rate_limited_with_retry_after() {
    let (s, events, running) = one_shard(config(), &[]).await;
    let (index, guild) = guild_on(&s, 0, 1);
    let first = running
        .commands
        .request_guild_members(0, MemberRequest::all(guild))
        .await
        .expect("the first is answered");
    assert_eq!(first.members.len(), world::member_count(index) as usize);
    let second = running
        .commands
        .request_guild_members(0, MemberRequest::all(guild))
        .await;
    let Err(CommandError::RateLimited {
        opcode,
        retry_after,
        guild_id,
    }) = second
    else {
        panic!("{second:?}");
    };
    assert_eq!((opcode, guild_id), (8, Some(guild)));
    assert!(
        retry_after > Duration::from_secs(20) && retry_after <= Duration::from_secs(30),
        "{retry_after:?}"
    );
    let records = commands_seen(&s, 0, 8);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].outcome, CommandOutcome::RateLimited);
    let told = Duration::from_secs_f64(records[1].retry_after.expect("retry_after"));
    assert!(
        told.abs_diff(retry_after) < Duration::from_millis(2),
        "{told:?} vs {retry_after:?}"
    );
    // Not a dispatch: the handler never saw it, the events counter did not count it.
    assert_eq!(events.seen(0, "RATE_LIMITED"), 0);
    let metrics = running.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"shardset_worker_events_total{event="RATE_LIMITED"}"#
        ),
        None
    );
    assert_eq!(
        sample(
            &metrics,
            r#"shardset_worker_commands_total{opcode="8",outcome="rate_limited"}"#
        ),
        Some(1.0)
    );
    let violations = s.fake.state().violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::RequestAllMembersTooFast);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_waits_for_the_session_then_goes_or_fails_after_its_wait() {
    let s = Scenario::start_with(config()).await;
    // The shard's Identify gate is held elsewhere for 3 s: its session is not live until then.
    let keys = Keys::new(s.fake.state().config.application_id);
    let _: () = redis::cmd("SET")
        .arg(keys.gate(0))
        .arg("another-pod")
        .arg("PX")
        .arg(3_000)
        .query(&mut s.redis.conn())
        .expect("hold the gate");
    let events = Arc::new(Events::default());
    let running = Running::start(&s, &s.fake.api_url(), 1, &[], |_| Arc::clone(&events)).await;
    let patient = running.commands.clone();
    let impatient = running.commands.clone().with_config(CommandConfig {
        live_wait: Duration::from_millis(500),
        ..CommandConfig::default()
    });
    let asked = tokio::time::Instant::now();
    // One after the other: a shard's queue is first in, first out, so an order queued behind
    // one that may wait 30 s is looked at (and refused) only once that one went.
    let gives_up = impatient
        .update_presence(0, &Presence::new(Status::Invisible))
        .await;
    assert!(
        matches!(gives_up, Err(CommandError::NotLive { shard: 0, waited }) if waited >= Duration::from_millis(500)),
        "{gives_up:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(2_500),
        "refused before the session was live"
    );
    assert_eq!(
        patient
            .update_presence(0, &Presence::new(Status::Idle))
            .await,
        Ok(()),
        "sent once the session is live"
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(2_500),
        "it waited for the gate"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            !commands_seen(&s, 0, 3).is_empty()
        })
        .await,
        "recorded"
    );
    let sent = commands_seen(&s, 0, 3);
    assert_eq!(sent.len(), 1, "the refused one never left: {sent:?}");
    assert_eq!(sent[0].d["status"], "idle");
    running.stop().await;
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_while_the_shard_waits_for_its_lease_goes_only_once_it_resumed() {
    let (s, _events, running) = one_shard(config(), &[]).await;
    let session = s.live_session(0).expect("live");
    let identifies = s.identifies();
    // Another pod takes the shard's lease for 7 s: the worker learns it at its next renewal
    // (every 5 s), gives the session up while it is live, and waits for the lease again.
    let keys = Keys::new(s.fake.state().config.application_id);
    let _: () = redis::cmd("SET")
        .arg(keys.lease(1, 0))
        .arg("another-pod/00000000")
        .arg("PX")
        .arg(7_000)
        .query(&mut s.redis.conn())
        .expect("take the lease");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            sample(
                &running.metrics().await,
                r#"shardset_worker_lease_lost_total{shard="0",reason="taken"}"#,
            ) == Some(1.0)
        })
        .await,
        "the worker gave the lease up"
    );
    // Queued while no session is live: it must wait for the next one to be RESUMED, not go out
    // on the new connection before its Resume (the fake closes 4003) nor fail unsent.
    let sent = running
        .commands
        .update_presence(0, &Presence::new(Status::Dnd))
        .await;
    assert_eq!(sent, Ok(()));
    // Sent means written to the socket; the fake records it when it reads it.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            !commands_seen(&s, 0, 3).is_empty()
        })
        .await,
        "recorded"
    );
    s.assert_resumed([0], identifies);
    let records = commands_seen(&s, 0, 3);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].session_id, session.session_id);
    assert_ne!(
        Some(records[0].connection),
        session.connection,
        "sent on the resumed connection"
    );
    s.assert_no_violations();
    running.stop().await;
}
