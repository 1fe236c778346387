//! The worker as a library (`worker::Builder`, or `worker::run` with parts of the test's own,
//! each with a handler of the test's own) against the fake Discord in-process and a real
//! redis-server: what a bot built on the crate gets, when its handler panics, and what a
//! shutdown saves whatever phase a shard is in.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use common::redis::RedisServer;
use common::scenario::wait_until;
use common::worker::stop_in_process;
use fake_discord::control::LoadSettings;
use fake_discord::{Config, FakeDiscord, RunningFake};
use prometheus_client::registry::Registry;
use redis::Commands;
use shard_worker::gateway::session::SessionConfig;
use shard_worker::gateway::trust::ResumeTrust;
use shard_worker::handler::{Dispatch, Handler};
use shard_worker::handover::Acting;
use shard_worker::identify::IdentifyQueue;
use shard_worker::identify::gate::{GateConfig, RedisQueue, connect, settle_epoch_script};
use shard_worker::shard::records::Records;
use shard_worker::shard::{ShardConfig, Shared};
use shard_worker::worker::board::Board;
use shard_worker::worker::bookkeeper::BookkeeperConfig;
use shard_worker::worker::metrics::Metrics;
use shard_worker::worker::{self, Builder, Outcome, Settings};
use shardset_contract::rest::DiscordRest;
use shardset_contract::token::Token;
use shardset_contract::{GatewayCompression, Keys, SessionRecord, ShardState};
use tokio::sync::watch;

const TOTAL: u32 = 2;

/// Redis, the fake, and the parts of a worker of shards `0..TOTAL`.
struct Lab {
    redis: RedisServer,
    fake: Option<RunningFake>,
    keys: Keys,
}

impl Lab {
    async fn start() -> Self {
        shardset_contract::rest::install_crypto_provider();
        let redis = RedisServer::start();
        let config = Config {
            guilds: 64,
            identify_window_ms: 200,
            heartbeat_interval_ms: 1_000,
            resume_window_ms: 60_000,
            ..Config::default()
        };
        let fake = FakeDiscord::spawn(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("fake Discord");
        let keys = Keys::new(fake.state().config.application_id);
        let _: () = settle_epoch_script()
            .key(keys.epoch())
            .invoke(&mut redis.conn())
            .expect("epoch");
        Self {
            redis,
            fake: Some(fake),
            keys,
        }
    }

    fn fake(&self) -> &RunningFake {
        self.fake.as_ref().expect("fake running")
    }

    fn load(&self, rate: u32) {
        self.fake().state().load.send_replace(LoadSettings {
            rate,
            payload_bytes: 128,
            dm_percent: 0,
        });
    }

    /// Starts `worker::run` with `handler`; checkpoints every `checkpoint_every`.
    async fn worker<H: Handler>(&self, handler: Arc<H>, checkpoint_every: Duration) -> Running {
        self.worker_with(handler, checkpoint_every, SessionConfig::default())
            .await
    }

    /// [`Lab::worker`] with the shards' session settings.
    async fn worker_with<H: Handler>(
        &self,
        handler: Arc<H>,
        checkpoint_every: Duration,
        session: SessionConfig,
    ) -> Running {
        let fake = self.fake();
        let token = Token::new("t");
        let rest = DiscordRest::new(&fake.api_url(), token.clone()).expect("rest");
        let bot = rest.gateway_bot().await.expect("gateway/bot");
        let conn = connect(&self.redis.url(), None).expect("redis");
        let gate = GateConfig::new(
            bot.session_start_limit.max_concurrency,
            Duration::from_millis(200),
            0,
        );
        let queue = RedisQueue::new(conn.clone(), self.keys.clone(), gate, "lib", Some(rest));
        let limit = bot.session_start_limit;
        queue
            .sync_budget(limit.remaining, limit.reset_after)
            .await
            .expect("budget");
        let queue: Arc<dyn IdentifyQueue> = Arc::new(queue);
        let records = Records::new(conn, self.keys.clone(), TOTAL);
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let board = Arc::new(Board::new(0, TOTAL - 1, Arc::clone(&metrics)));
        let resume_window = Duration::from_secs(60);
        let shared = Arc::new(Shared {
            config: ShardConfig {
                total: TOTAL,
                intents: 513,
                gateway_url: bot.url.clone(),
                compression: GatewayCompression::default(),
                send_window: Duration::from_secs(60),
                resume_trust: ResumeTrust::new(&fake.api_url(), &bot.url),
                session,
                lease_ttl: Duration::from_secs(15),
                resume_window,
                pod: "lib".into(),
                read_buffer: 2 * 1024,
            },
            token,
            queue,
            records: Some(records),
            handler,
            bus: None,
            board: Arc::clone(&board),
            acting: Arc::new(Acting::always_active(TOTAL.to_string())),
            inboxes: Default::default(),
        });
        let bookkeeping = BookkeeperConfig {
            tick: Duration::from_millis(100),
            checkpoint_every,
            resume_window,
            lease_ttl: Duration::from_secs(15),
            fence_margin: Duration::from_secs(3),
            status_ttl: Duration::from_secs(30),
            pod: "lib".into(),
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(worker::run(shared, bookkeeping, stop_rx));
        Running { board, stop, task }
    }

    fn saved(&self, shard: u32) -> Option<SessionRecord> {
        let json: Option<String> = self
            .redis
            .conn()
            .get(self.keys.session(TOTAL, shard))
            .expect("get");
        json.map(|j| serde_json::from_str(&j).expect("record"))
    }

    fn lease_held(&self, shard: u32) -> bool {
        self.redis
            .conn()
            .exists(self.keys.lease(TOTAL, shard))
            .expect("exists")
    }
}

struct Running {
    board: Arc<Board>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Outcome>,
}

impl Running {
    async fn ready(&self) -> bool {
        wait_until(Duration::from_secs(30), || async { self.board.all_ready() }).await
    }
}

/// Counts dispatches per shard and remembers the last seq it finished.
#[derive(Default)]
struct Counting {
    last_seq: [AtomicU64; TOTAL as usize],
}

impl Handler for Counting {
    async fn dispatch(&self, dispatch: Dispatch<'_>) {
        self.last_seq[dispatch.shard as usize].store(dispatch.seq, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_runs_a_bots_own_handler_and_saves_every_session_on_shutdown() {
    // What the README's example does, with flags instead of the pod env.
    let lab = Lab::start().await;
    let settings = Settings::try_parse_from([
        "my-bot".to_owned(),
        "--shard-first=0".to_owned(),
        format!("--shard-last={}", TOTAL - 1),
        format!("--shard-total={TOTAL}"),
        format!("--redis-url={}", lab.redis.url()),
        format!("--discord-api-url={}", lab.fake().api_url()),
        "--identify-window-ms=200".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        "--pod=my-bot".to_owned(),
    ])
    .expect("settings");
    let handler = Arc::new(Counting::default());
    let (stop, stop_rx) = watch::channel(false);
    let worker = Builder::new(settings, Token::new("t"));
    let task = tokio::spawn(worker.run(Arc::clone(&handler), stop_rx));
    lab.load(100);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            handler
                .last_seq
                .iter()
                .all(|seq| seq.load(Ordering::SeqCst) > 10)
        })
        .await,
        "every shard's dispatches reach the bot's handler"
    );
    let outcome = stop_in_process(&stop, task)
        .await
        .expect("the worker started");
    assert_eq!(outcome.stopped, vec![0, 1]);
    assert_eq!(outcome.refused, None);
    for shard in 0..TOTAL {
        let saved = lab.saved(shard).expect("a record for the next owner");
        let handled = handler.last_seq[shard as usize].load(Ordering::SeqCst);
        assert_eq!(
            saved.seq, handled,
            "shard {shard} saved up to its last dispatch"
        );
        assert!(!lab.lease_held(shard), "lease {shard} released");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_reconnecting_saves_the_session_it_still_holds() {
    let mut lab = Lab::start().await;
    let handler = Arc::new(Counting::default());
    // Checkpoints so rare that only the first one (right after READY) is ever written.
    let running = lab
        .worker(Arc::clone(&handler), Duration::from_secs(3_600))
        .await;
    assert!(running.ready().await, "ready");
    lab.load(200);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            handler.last_seq[0].load(Ordering::SeqCst) > 100
        })
        .await,
        "dispatches flow"
    );
    let checkpoint = lab.saved(0).expect("the first checkpoint");
    // Discord goes away: the shards lose their connections and back off between attempts,
    // still holding resumable sessions.
    lab.fake.take().expect("fake").shutdown().await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            running
                .board
                .slots()
                .all(|s| s.state() == ShardState::Reconnecting)
        })
        .await,
        "reconnecting"
    );
    let handled = handler.last_seq[0].load(Ordering::SeqCst);
    assert!(handled > checkpoint.seq);
    let outcome = stop_in_process(&running.stop, running.task).await;
    assert_eq!(outcome.stopped, vec![0, 1]);
    let saved = lab.saved(0).expect("a record for the next owner");
    assert_eq!(
        saved.seq, handled,
        "the final save holds the last handled dispatch (checkpoint was {})",
        checkpoint.seq
    );
    assert!(!lab.lease_held(0), "lease released");
}

/// Panics on shard 0's first MESSAGE_CREATE: a bug in a bot's handler.
#[derive(Default)]
struct PanicsOnShard0 {
    counting: Counting,
}

impl Handler for PanicsOnShard0 {
    async fn dispatch(&self, dispatch: Dispatch<'_>) {
        if dispatch.shard == 0 && dispatch.event == "MESSAGE_CREATE" {
            panic!("a bug in the handler");
        }
        self.counting.dispatch(dispatch).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_ends_the_worker_and_frees_the_shard_for_a_restart() {
    let lab = Lab::start().await;
    let handler = Arc::new(PanicsOnShard0::default());
    let running = lab
        .worker(Arc::clone(&handler), Duration::from_millis(500))
        .await;
    assert!(running.ready().await, "ready");
    let handled_before = {
        let slot = running.board.slot(0).expect("slot");
        slot.handled_seq()
    };
    lab.load(100);
    // The worker does not keep a dead shard behind a renewed lease and a green /readyz: it
    // stops its other shards (saving their sessions) and ends, reporting the panic.
    let outcome = tokio::time::timeout(Duration::from_secs(30), running.task)
        .await
        .expect("the worker ends after the panic")
        .expect("task");
    assert_eq!(outcome.panicked, vec![0], "{outcome:?}");
    assert_eq!(outcome.stopped, vec![1]);
    let state = running.board.slot(0).expect("slot").state();
    assert_eq!(state, ShardState::Fatal);
    assert!(!running.board.all_ready());
    for shard in 0..TOTAL {
        assert!(!lab.lease_held(shard), "lease {shard} released");
    }
    // Shard 0's session is saved up to the last dispatch its handler finished: a restart
    // resumes it (no Identify) from there.
    let saved = lab.saved(0).expect("shard 0's session saved");
    assert!(saved.seq >= handled_before, "{saved:?}");
    let session = lab
        .fake()
        .state()
        .sessions()
        .into_iter()
        .find(|s| s.shard == 0)
        .expect("the fake still holds shard 0's session");
    assert_eq!(session.session_id, saved.session_id);
    assert!(
        saved.seq < session.seq,
        "the event that panicked is replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifies_that_never_last_stop_the_shard_and_mark_it() {
    // The gateway ends shard 0's session (4009: Identify anew) each time it goes live, so every
    // session start is spent for nothing. The guard (short timings here) stops the shard after
    // the limit instead of identifying every few seconds until the budget is gone.
    let lab = Lab::start().await;
    let session = SessionConfig {
        stable_after: Duration::from_secs(5),
        identify_backoff_base: Duration::from_millis(100),
        identify_backoff_max: Duration::from_secs(1),
        identify_loop_limit: 3,
        ..SessionConfig::default()
    };
    let handler = Arc::new(Counting::default());
    let running = lab
        .worker_with(Arc::clone(&handler), Duration::from_secs(2), session)
        .await;
    let fake = lab.fake().state();
    let mut ended = std::collections::HashSet::new();
    let stopped = wait_until(Duration::from_secs(30), || {
        // A session of shard 0 live for the first time: end it.
        for live in fake.sessions() {
            if live.shard == 0 && live.connected && live.ready && ended.insert(live.session_id) {
                fake.inject(&fake_discord::control::FaultRequest {
                    fault: fake_discord::control::Fault::Close {
                        code: 4009,
                        reason: None,
                    },
                    target: fake_discord::control::Target {
                        shard: Some(0),
                        ..Default::default()
                    },
                });
            }
        }
        let state = running.board.slot(0).expect("slot").state();
        async move { state == ShardState::Fatal }
    })
    .await;
    assert!(
        stopped,
        "shard 0 stopped; it identified {} times",
        ended.len()
    );
    let identifies = |shard: u32| {
        fake.identifies()
            .iter()
            .filter(|i| i.shard == shard)
            .count()
    };
    assert_eq!(identifies(0), 3, "exactly the limit was spent");
    let reason = running.board.slot(0).expect("slot").lock().reason.clone();
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("IdentifyLoop")),
        "{reason:?}"
    );
    // Marked in Redis (no close code): a restarted pod would not identify it either.
    let marker: Option<String> = lab.redis.conn().get(lab.keys.fatal(TOTAL, 0)).expect("get");
    let marker = shardset_contract::FatalMarker::parse(&marker.expect("a fatal marker"));
    assert_eq!(marker.code, None);
    assert!(marker.reason.starts_with("IdentifyLoop"), "{marker:?}");
    // No more Identifies while it is marked; shard 1 was never in question.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(identifies(0), 3);
    assert_eq!(identifies(1), 1);
    assert_eq!(
        running.board.slot(1).expect("slot").state(),
        ShardState::Ready
    );
    let outcome = stop_in_process(&running.stop, running.task).await;
    assert_eq!(outcome.fatal, vec![(0, 0)]);
    assert_eq!(outcome.stopped, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_after_ready_stops_identifying_at_the_limit() {
    // A process that dies after READY and before its first checkpoint leaves nothing to resume:
    // each restart identifies anew. The guard's count is kept in Redis, so restarts do not
    // reset it: after the limit the next process marks the shard instead of identifying.
    let lab = Lab::start().await;
    let session = SessionConfig {
        stable_after: Duration::from_secs(5),
        identify_backoff_base: Duration::from_millis(100),
        identify_backoff_max: Duration::from_millis(400),
        identify_loop_limit: 3,
        ..SessionConfig::default()
    };
    let fake = lab.fake().state();
    let accepted = |shard: u32| {
        fake.identifies()
            .iter()
            .filter(|i| {
                i.shard == shard && i.outcome == fake_discord::control::IdentifyOutcome::Accepted
            })
            .count()
    };
    let never = Duration::from_secs(3_600);
    for start in 1..=3 {
        let running = lab
            .worker_with(Arc::new(Counting::default()), never, session.clone())
            .await;
        let identified = wait_until(Duration::from_secs(30), || async {
            accepted(0) >= start && accepted(1) >= start
        })
        .await;
        assert!(identified, "start {start}: both shards identified");
        // The process dies (no shutdown) before its first checkpoint (the test deletes the one
        // the bookkeeper may have written at READY), and its leases would expire in 15 s: the
        // next process gets them at once here.
        running.task.abort();
        let _ = running.task.await;
        let mut keys = Vec::new();
        for shard in 0..TOTAL {
            keys.extend([lab.keys.lease(TOTAL, shard), lab.keys.session(TOTAL, shard)]);
        }
        let _: () = lab.redis.conn().del(&keys).expect("del");
    }
    let running = lab
        .worker_with(Arc::new(Counting::default()), never, session.clone())
        .await;
    let stopped = wait_until(Duration::from_secs(20), || async {
        running.board.slot(0).expect("slot").state() == ShardState::Fatal
    })
    .await;
    assert!(
        stopped,
        "the fourth process stopped shard 0; Identifies accepted: {}",
        accepted(0)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        accepted(0),
        3,
        "exactly the limit was spent across the restarts"
    );
    let marker: Option<String> = lab.redis.conn().get(lab.keys.fatal(TOTAL, 0)).expect("get");
    let marker = shardset_contract::FatalMarker::parse(&marker.expect("a fatal marker"));
    assert!(marker.reason.starts_with("IdentifyLoop"), "{marker:?}");
    running.stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), running.task).await;
}
