//! Commands back: the request reaches the subject of the shard holding the guild, the worker's
//! reply comes back (chunks, errors), and a moved layout is found through the `layout` key.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use shardset_contract::bus;
use shardset_handler::commands::op;
use shardset_handler::{CommandError, Replica};

use crate::support::{Bus, Record, TOTAL};

const TTL: Duration = Duration::from_millis(1500);

/// A stand-in for the worker holding `shard` of layout `total`: answers each request with
/// `answer(request)`.
async fn worker(
    bus: &Bus,
    total: u32,
    shard: u32,
    answer: fn(&serde_json::Value) -> serde_json::Value,
) -> tokio::task::JoinHandle<Vec<serde_json::Value>> {
    let client = async_nats::connect(bus.server.url())
        .await
        .expect("connect");
    let mut requests = client
        .subscribe(bus::command_subject(&bus.prefix, total, shard))
        .await
        .expect("subscribe");
    // A round trip on the same connection: the server has taken the subscription once it
    // answers (a flush only writes it out).
    async_nats::jetstream::new(client.clone())
        .query_account()
        .await
        .expect("round trip");
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(request) = requests.next().await {
            let body: serde_json::Value =
                serde_json::from_slice(&request.payload).expect("JSON request");
            let reply = answer(&body);
            seen.push(body);
            if let Some(to) = request.reply {
                client
                    .publish(to, reply.to_string().into())
                    .await
                    .expect("reply");
                client.flush().await.expect("flush");
            }
            if seen.len() == 2 {
                break;
            }
        }
        seen
    })
}

#[tokio::test]
async fn commands_reach_the_shard_of_the_guild_and_bring_the_answer_back() {
    let bus = Bus::start(TTL).await;
    let replica = Replica::start(bus.config("r", TTL), Record::default().handler("r"))
        .await
        .expect("start");
    let guild = 41_771_983_423_143_937_u64;
    let shard = bus::shard_of_guild(guild, TOTAL);
    let answers = worker(&bus, TOTAL, shard, |request| match request["op"].as_u64() {
        Some(8) => json!({"ok": true, "chunks": [{"chunk_index": 0, "chunk_count": 1, "nonce": request["d"]["nonce"]}]}),
        _ => json!({"ok": false, "error": {"kind": "rate_limited", "message": "slow down", "retryAfterMs": 1200}}),
    })
    .await;
    let commands = replica.commands().with_total(TOTAL);
    let members = commands
        .send_for_guild(
            guild,
            op::REQUEST_GUILD_MEMBERS,
            &json!({"guild_id": guild.to_string(), "query": "", "limit": 0, "nonce": "n1"}),
        )
        .await
        .expect("sent");
    assert_eq!(
        members.chunks,
        [json!({"chunk_index": 0, "chunk_count": 1, "nonce": "n1"})]
    );
    let refused = commands
        .send_for_guild(guild, op::PRESENCE_UPDATE, &json!({"status": "online"}))
        .await
        .expect_err("rate limited");
    assert_eq!(
        refused,
        CommandError::Worker {
            kind: "rate_limited".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(1200)),
        }
    );
    let requests = answers.await.expect("worker");
    assert_eq!(requests[0]["op"], 8);
    assert_eq!(requests[1], json!({"op": 3, "d": {"status": "online"}}));
    replica.shutdown().await;
}

#[tokio::test]
async fn a_moved_layout_is_found_through_the_layout_key() {
    let bus = Bus::start(TTL).await;
    let replica = Replica::start(bus.config("r", TTL), Record::default().handler("r"))
        .await
        .expect("start");
    let guild = 41_771_983_423_143_937_u64;
    // The bot resharded from 16 to 24: only layout 24 takes commands, and says so.
    let moved = 24;
    let answers = worker(
        &bus,
        moved,
        bus::shard_of_guild(guild, moved),
        |_| json!({"ok": true}),
    )
    .await;
    let kv = bus
        .js
        .get_key_value(bus::handlers_bucket(&bus.stream))
        .await
        .expect("bucket");
    let old = replica.commands().with_total(TOTAL);
    let before = old
        .send_for_guild(guild, op::PRESENCE_UPDATE, &json!({}))
        .await
        .expect_err("nobody on layout 16, no layout key yet");
    assert_eq!(before.label(), "no_responders");
    kv.put(bus::LAYOUT_KEY, json!({"total": moved}).to_string().into())
        .await
        .expect("layout");
    old.send_for_guild(guild, op::PRESENCE_UPDATE, &json!({}))
        .await
        .expect("retried on layout 24");
    answers.abort();
    replica.shutdown().await;
}
