//! Commands back over the bus (`docs/bus-protocol.md`, "Commands back"): a real `shard-worker`
//! process publishing to a real nats-server, the fake Discord over real WebSockets (which records
//! every command and answers op 8 with chunks or RATE_LIMITED), a real redis-server, and a Rust
//! handler (`shardset-handler`'s `Commands`) sending requests as a handler service does.

mod common;

use std::time::Duration;

use common::bus::{Bus, PREFIX, STREAM};
use common::metrics::{total, total_with};
use common::roles::Roles;
use common::scenario::{Scenario, wait_until};
use common::worker::{WorkerProcess, WorkerSpec};
use fake_discord::control::{CommandOutcome, CommandRecord, RecordFilter, Rule};
use fake_discord::world;
use serde_json::{Value, json};
use shardset_contract::bus as protocol;
use shardset_contract::{Role, env};
use shardset_handler::commands::op;
use shardset_handler::{CommandError, Config, Event, HandlerError, Replica};

/// GUILDS | GUILD_MEMBERS (all-members requests need it) | GUILD_MESSAGES.
const INTENTS: &str = "515";
const TOTAL: u32 = 2;

/// A worker of shards `first..=last` of [`TOTAL`] publishing to `bus`, once its shards are ready.
async fn worker(s: &Scenario, bus: &Bus, pod: &str, first: u32, last: u32) -> WorkerProcess {
    let mut spec: WorkerSpec = s.spec(pod, first, last, TOTAL);
    spec.extra_env = bus.env(&[(env::DISCORD_INTENTS, INTENTS)]);
    let worker = WorkerProcess::start(spec);
    assert!(
        worker.wait_ready(Duration::from_secs(30)).await,
        "ready:\n{}",
        worker.log_text()
    );
    worker
}

/// A handler replica of the bot (it only sends commands here).
async fn handler(bus: &Bus) -> Replica {
    let config = Config::new(bus.nats.url(), STREAM);
    Replica::start(config, |_: Event| async { Ok::<(), HandlerError>(()) })
        .await
        .expect("the handler starts")
}

/// Waits until the worker takes commands for `shards` shards (subscribed once live).
async fn answering(worker: &WorkerProcess, shards: f64) -> bool {
    wait_until(Duration::from_secs(10), || async {
        total(&worker.metrics().await, "shardset_bus_command_shards") == shards
    })
    .await
}

/// The fake (shards start in a moment), Redis, NATS, a worker of shards `0..=last` of [`TOTAL`]
/// taking commands for all of them, and a handler replica.
async fn started(pod: &str, last: u32) -> (Scenario, Bus, WorkerProcess, Replica) {
    let s = Scenario::start_with(fake_discord::Config {
        identify_window_ms: 200,
        ..Scenario::config()
    })
    .await;
    let bus = Bus::start();
    let worker = worker(&s, &bus, pod, 0, last).await;
    assert!(answering(&worker, f64::from(last + 1)).await, "subscribed");
    let replica = handler(&bus).await;
    (s, bus, worker, replica)
}

fn commands_seen(s: &Scenario, shard: u32, op: u8) -> Vec<CommandRecord> {
    s.fake.state().commands(&RecordFilter {
        shard: Some(shard),
        op: Some(op),
        ..RecordFilter::default()
    })
}

/// The fake's record of `shard`'s commands of `op`, once it holds `count` (the worker replies
/// once the command is written; the fake records it when it reads it).
async fn wait_seen(s: &Scenario, shard: u32, op: u8, count: usize) -> Vec<CommandRecord> {
    wait_until(Duration::from_secs(5), || async {
        commands_seen(s, shard, op).len() >= count
    })
    .await;
    commands_seen(s, shard, op)
}

fn kind(result: Result<shardset_handler::Sent, CommandError>) -> (String, Option<Duration>) {
    match result {
        Err(CommandError::Worker {
            kind, retry_after, ..
        }) => (kind, retry_after),
        other => panic!("a worker's error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sends_presence_voice_and_member_requests_and_gets_the_workers_answers() {
    let (s, bus, worker, replica) = started("cmd", TOTAL - 1).await;
    let commands = replica.commands().with_total(TOTAL);
    let guilds = s.fake.state().config.guilds;
    let index = world::guilds_on_shard(guilds, 1, TOTAL)
        .next()
        .expect("a guild on shard 1");
    let guild = world::guild_id(index);

    // op 3 on each shard, op 4 for a guild (routed to its shard by the library).
    for shard in 0..TOTAL {
        let presence = json!({"since": null, "activities": [{"name": format!("bus {shard}"), "type": 0}],
            "status": "dnd", "afk": false});
        let sent = commands
            .send_to_shard(TOTAL, shard, op::PRESENCE_UPDATE, &presence)
            .await
            .expect("presence sent");
        assert!(sent.chunks.is_empty());
        let seen = wait_seen(&s, shard, 3, 1).await;
        assert_eq!(seen.len(), 1, "shard {shard}: {seen:?}");
        assert_eq!(seen[0].d, presence, "sent as written");
    }
    let voice = json!({"guild_id": guild.to_string(),
        "channel_id": world::voice_channel_id(guild).to_string(), "self_mute": false, "self_deaf": true});
    commands
        .send_for_guild(guild, op::VOICE_STATE_UPDATE, &voice)
        .await
        .expect("voice state sent");
    let seen = wait_seen(&s, 1, 4, 1).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (&seen[0].d, &seen[0].outcome),
        (&voice, &CommandOutcome::Accepted)
    );

    // op 8 with a nonce: the chunks come back, in order; the second all-members request for the
    // guild within 30 s is rate limited by Discord, with its retry_after. (A guild of a few
    // thousand members: the chunks of a large one do not fit in one NATS message, below.)
    let index = world::guilds_on_shard(guilds, 1, TOTAL)
        .find(|i| (1_001..=2_500).contains(&world::member_count(*i)))
        .expect("a guild of 1,001 to 2,500 members on shard 1");
    let guild = world::guild_id(index);
    let all = json!({"guild_id": guild.to_string(), "query": "", "limit": 0, "nonce": "bus-1"});
    let members = commands
        .send_for_guild(guild, op::REQUEST_GUILD_MEMBERS, &all)
        .await
        .expect("members");
    let count = world::member_count(index) as usize;
    assert_eq!(
        members.chunks.len(),
        count.div_ceil(1_000),
        "one chunk per 1,000"
    );
    let mut received = 0;
    for (i, chunk) in members.chunks.iter().enumerate() {
        assert_eq!(chunk["nonce"], "bus-1");
        assert_eq!(chunk["chunk_index"], i);
        assert_eq!(chunk["guild_id"], guild.to_string());
        received += chunk["members"].as_array().expect("members").len();
    }
    assert_eq!(received, count);
    let again = json!({"guild_id": guild.to_string(), "query": "", "limit": 0, "nonce": "bus-2"});
    let (kind_again, retry) = kind(
        commands
            .send_for_guild(guild, op::REQUEST_GUILD_MEMBERS, &again)
            .await,
    );
    assert_eq!(kind_again, "rate_limited");
    let retry = retry.expect("retryAfterMs");
    assert!(
        retry > Duration::from_secs(20) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
    let outcomes: Vec<_> = commands_seen(&s, 1, 8)
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [CommandOutcome::Answered, CommandOutcome::RateLimited]
    );
    // Chunks past the server's max_payload (1 MiB): an error reply, not a lost one.
    let largest = world::guilds_on_shard(guilds, 0, TOTAL)
        .max_by_key(|i| world::member_count(*i))
        .expect("a guild on shard 0");
    assert!(
        world::member_count(largest) > 4_500,
        "about 1.5 MiB of members"
    );
    let large = world::guild_id(largest);
    let all = json!({"guild_id": large.to_string(), "query": "", "limit": 0, "nonce": "bus-3"});
    let (too_large, _) = kind(
        commands
            .send_for_guild(large, op::REQUEST_GUILD_MEMBERS, &all)
            .await,
    );
    assert_eq!(too_large, "too_large");

    // Refused before sending: an opcode the session owns, a payload past 4,096 bytes.
    for (opcode, d) in [
        (2, json!({"token": "not-ours", "intents": 0})),
        (6, json!({})),
        (
            op::PRESENCE_UPDATE,
            json!({"status": "online", "x": "a".repeat(5_000)}),
        ),
    ] {
        let (refused, _) = kind(commands.send_to_shard(TOTAL, 0, opcode, &d).await);
        assert_eq!(refused, "refused", "op {opcode}");
    }
    assert!(commands_seen(&s, 0, 2).is_empty() && commands_seen(&s, 0, 6).is_empty());
    assert_eq!(
        commands_seen(&s, 0, 3).len(),
        1,
        "the oversized presence never left"
    );

    // Bad bus messages: error replies, and a request without a reply subject is dropped.
    let client = async_nats::connect(bus.nats.url()).await.expect("connect");
    let subject = protocol::command_subject(PREFIX, TOTAL, 0);
    for (body, expected) in [
        (&b"not json"[..], "invalid"),
        (br#"{"op":"3","d":{}}"#, "invalid"),
        (br#"{"op":8,"d":{"query":"","nonce":"x"}}"#, "invalid"),
    ] {
        let reply = client
            .request(subject.clone(), body.to_vec().into())
            .await
            .expect("a reply");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
        assert_eq!(reply["ok"], false);
        assert_eq!(reply["error"]["kind"], expected, "{body:?}");
    }
    let huge = vec![b'x'; 512 * 1024];
    let reply = client
        .request(subject.clone(), huge.into())
        .await
        .expect("a reply");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(reply["error"]["kind"], "refused");
    client
        .publish(subject.clone(), br#"{"op":3,"d":{}}"#.to_vec().into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let metrics = worker.metrics().await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            total_with(
                &worker.metrics().await,
                "shardset_bus_commands_total",
                r#"result="no_reply""#,
            ) == 1.0
        })
        .await,
        "{metrics}"
    );
    assert_eq!(commands_seen(&s, 0, 3).len(), 1, "nothing sent for it");

    // A shard this layout does not run live here: no responders.
    assert_eq!(
        commands
            .send_to_shard(TOTAL + 1, 0, op::PRESENCE_UPDATE, &json!({}))
            .await,
        Err(CommandError::NoResponders {
            total: TOTAL + 1,
            shard: 0
        })
    );
    let metrics = worker.metrics().await;
    let result = |r: &str| {
        total_with(
            &metrics,
            "shardset_bus_commands_total",
            &format!(r#"result="{r}""#),
        )
    };
    assert_eq!(result("ok"), 4.0, "{metrics}");
    assert_eq!(result("rate_limited"), 1.0);
    assert_eq!(result("too_large"), 1.0);
    assert_eq!(result("refused"), 4.0);
    assert_eq!(result("invalid"), 3.0);
    replica.shutdown().await;
    // The one rule broken is the one the test broke on purpose (Discord answers it with
    // RATE_LIMITED, and the fake notes it).
    let violations = s.fake.state().violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::RequestAllMembersTooFast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_live_sessions_take_commands() {
    // Shard 0 only: shard 1 of the layout has no worker.
    let (s, _bus, mut worker, replica) = started("half", 0).await;
    let commands = replica.commands().with_total(TOTAL);
    let presence = json!({"since": null, "activities": [], "status": "idle", "afk": false});
    commands
        .send_to_shard(TOTAL, 0, op::PRESENCE_UPDATE, &presence)
        .await
        .expect("shard 0 is live");
    assert_eq!(wait_seen(&s, 0, 3, 1).await.len(), 1);
    assert_eq!(
        commands
            .send_to_shard(TOTAL, 1, op::PRESENCE_UPDATE, &presence)
            .await,
        Err(CommandError::NoResponders {
            total: TOTAL,
            shard: 1
        })
    );
    // The worker stops: its session ends, and nobody answers for it any more.
    assert_eq!(worker.terminate(Duration::from_secs(20)).await, Some(0));
    assert_eq!(
        commands
            .send_to_shard(TOTAL, 0, op::PRESENCE_UPDATE, &presence)
            .await,
        Err(CommandError::NoResponders {
            total: TOTAL,
            shard: 0
        })
    );
    assert_eq!(commands_seen(&s, 0, 3).len(), 1);
    replica.shutdown().await;
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_and_retired_layouts_stop_taking_commands() {
    // `docs/bus-protocol.md`, "Commands back": only a layout that acts (active or claiming)
    // answers `S.commands.<total>.<shard>`; a standby (the new layout during a BlueGreen
    // hand-over) or retired one (the old layout after it) unsubscribes, so the request goes to
    // the acting layout only, or finds no responders.
    let (s, _bus, worker, replica) = started("roles", TOTAL - 1).await;
    let commands = replica.commands().with_total(TOTAL);
    let presence = json!({"since": null, "activities": [], "status": "idle", "afk": false});
    // Requests to every shard of the layout find no responders.
    let none_answers = async |commands: &shardset_handler::Commands, role: &str| {
        for shard in 0..TOTAL {
            assert_eq!(
                commands
                    .send_to_shard(TOTAL, shard, op::PRESENCE_UPDATE, &presence)
                    .await,
                Err(CommandError::NoResponders {
                    total: TOTAL,
                    shard
                }),
                "{role} shard {shard}"
            );
        }
    };
    let mut roles = Roles::new(&s);

    roles.write(&[(TOTAL, Role::Standby)]);
    assert!(roles.acked(TOTAL).await, "standby acknowledged");
    assert!(
        answering(&worker, 0.0).await,
        "a standby layout unsubscribes"
    );
    none_answers(&commands, "standby").await;

    roles.write(&[(TOTAL, Role::Active)]);
    assert!(roles.acked(TOTAL).await, "active acknowledged");
    assert!(
        answering(&worker, f64::from(TOTAL)).await,
        "acting again: subscribed"
    );
    commands
        .send_to_shard(TOTAL, 0, op::PRESENCE_UPDATE, &presence)
        .await
        .expect("the acting layout answers");
    assert_eq!(wait_seen(&s, 0, 3, 1).await.len(), 1);

    roles.write(&[(TOTAL, Role::Retired)]);
    assert!(roles.acked(TOTAL).await, "retired acknowledged");
    assert!(
        answering(&worker, 0.0).await,
        "a retired layout unsubscribes"
    );
    none_answers(&commands, "retired").await;
    // Only the command sent while acting reached Discord.
    assert_eq!(commands_seen(&s, 0, 3).len(), 1);
    assert!(commands_seen(&s, 1, 3).is_empty());
    replica.shutdown().await;
    s.assert_no_violations();
}
