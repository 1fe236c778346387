//! The demo handler end to end in one process: a real nats-server carrying MESSAGE_CREATE events
//! of the fake Discord's synthetic messages, published as the worker publishes them; the demo's
//! replier answers each through the fake's REST API; the fake counts the replies
//! (`/control/replies`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use demo_handler::metrics::Metrics;
use demo_handler::reply::Replier;
use fake_discord::FakeDiscord;
use fake_discord::state::events::NewMessage;
use fake_discord::world::{self, Person};
use nats_test_server::NatsServer;
use shardset_contract::bus::{self, Partition, header};
use shardset_contract::rest::DiscordRest;
use shardset_contract::token::Token;
use shardset_handler::{Config, Event, Replica, wire};
use tokio::sync::mpsc;

const PARTITIONS: u32 = 4;
const TOTAL: u32 = 16;

struct Setup {
    _nats: NatsServer,
    fake: fake_discord::RunningFake,
    js: jetstream::Context,
    config: Config,
    seq: u64,
}

impl Setup {
    async fn start() -> Self {
        shardset_contract::rest::install_crypto_provider();
        let fake = FakeDiscord::spawn(
            fake_discord::Config::default(),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("fake Discord");
        let nats = NatsServer::start();
        let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
        let (stream, prefix) = ("shardset-demo-bot", "shardset.demo.bot");
        let created = js
            .create_stream(wire::stream_config(
                stream,
                prefix,
                PARTITIONS,
                bus::DEFAULT_DUPLICATE_WINDOW,
            ))
            .await
            .expect("stream");
        for partition in Partition::all(PARTITIONS) {
            created
                .create_consumer(wire::consumer_config(
                    stream,
                    prefix,
                    bus::DEFAULT_GROUP,
                    partition,
                    Duration::from_secs(2),
                ))
                .await
                .expect("consumer");
        }
        let mut config = Config::new(nats.url(), stream);
        config.lease_ttl = Duration::from_secs(2);
        config.fetch_expires = Duration::from_millis(250);
        Self {
            _nats: nats,
            fake,
            js,
            config,
            seq: 0,
        }
    }

    /// A user's synthetic message in the fake's guild `index`: its id, guild and MESSAGE_CREATE `d`.
    fn synthetic_message(&self, index: u32) -> (u64, u64, Bytes) {
        let guild = world::guild_id(index);
        let message = NewMessage {
            guild: Some(guild),
            channel_id: world::text_channel_id(guild),
            author: Person::User(7),
            content: "hello",
            reply_to: None,
            nonce: None,
        };
        let (id, d) = self
            .fake
            .state()
            .create_message(&message, true, &mut Vec::new());
        (id, guild, d)
    }

    /// A user's message in the fake's guild `index`, published as its shard's worker would.
    async fn user_message(&mut self, index: u32) -> u64 {
        let (id, guild, d) = self.synthetic_message(index);
        self.publish(guild, d).await;
        id
    }

    async fn publish(&mut self, guild: u64, d: Bytes) {
        self.seq += 1;
        let mut headers = HeaderMap::new();
        headers.insert(header::EVENT, "MESSAGE_CREATE");
        headers.insert(
            header::SHARD,
            bus::shard_of_guild(guild, TOTAL).to_string().as_str(),
        );
        headers.insert(header::TOTAL, TOTAL.to_string().as_str());
        headers.insert(header::SEQ, self.seq.to_string().as_str());
        headers.insert(header::GUILD, guild.to_string().as_str());
        headers.insert(
            header::MSG_ID,
            bus::session_msg_id("demo-session", self.seq).as_str(),
        );
        self.js
            .publish_with_headers(
                bus::event_subject("shardset.demo.bot", Partition::of(Some(guild), PARTITIONS)),
                headers,
                d,
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    /// A replica of the demo service that reports each handled event's outcome.
    async fn replica(&self) -> (Replica, mpsc::UnboundedReceiver<bool>) {
        // Unset in the fake: any non-empty token is accepted.
        let token = self
            .fake
            .state()
            .config
            .token
            .clone()
            .unwrap_or_else(|| "demo-token".into());
        let rest = DiscordRest::new(&self.fake.api_url(), Token::new(token)).expect("rest");
        let replier = Arc::new(Replier::new(rest, Metrics::default()));
        let (done, handled) = mpsc::unbounded_channel();
        let replica = Replica::start(self.config.clone(), move |event: Event| {
            let (replier, done) = (replier.clone(), done.clone());
            async move {
                let outcome = replier.handle(event).await;
                if let Err(e) = &outcome {
                    eprintln!("reply failed: {e}");
                }
                let _ = done.send(outcome.is_ok());
                outcome
            }
        })
        .await
        .expect("replica");
        (replica, handled)
    }

    fn replies(&self) -> fake_discord::control::RepliesReport {
        self.fake.state().replies_report(0, 4_102_444_800_000)
    }
}

#[tokio::test]
async fn every_message_is_answered_once() {
    let mut setup = Setup::start().await;
    let mut ids = Vec::new();
    for index in 0..6 {
        ids.push(setup.user_message(index).await);
    }
    let (replica, mut handled) = setup.replica().await;
    for _ in &ids {
        let ok = tokio::time::timeout(Duration::from_secs(20), handled.recv())
            .await
            .expect("handled in time")
            .expect("handled");
        assert!(ok, "the reply succeeded");
    }
    let report = setup.replies();
    assert_eq!(
        (report.messages, report.exactly_once, report.multiple),
        (6, 6, 0)
    );
    replica.shutdown().await;
}

/// What Discord does with `enforce_nonce`: a second create with the same nonce (a redelivered
/// event after its replica died between replying and acknowledging) returns the first message
/// instead of creating another.
#[tokio::test]
async fn a_redelivered_message_is_not_answered_twice() {
    let mut setup = Setup::start().await;
    let (id, guild, d) = setup.synthetic_message(0);
    // The same event twice under two ids: what a replay outside the duplicate window, or a
    // redelivery after a replica died between its reply and its ack, looks like to the handler.
    setup.publish(guild, d.clone()).await;
    setup.publish(guild, d).await;
    let (replica, mut handled) = setup.replica().await;
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(20), handled.recv())
            .await
            .expect("handled in time")
            .expect("handled");
    }
    let report = setup.replies();
    assert_eq!(report.multiple, 0, "message {id} answered more than once");
    assert_eq!(report.exactly_once, 1);
    replica.shutdown().await;
}
