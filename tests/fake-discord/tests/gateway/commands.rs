//! The commands of an authenticated client: op 3 and op 4 recorded per session, op 8 answered
//! with member chunks and limited to one all-members request per guild per window, shapes
//! checked (4001), guilds and intents checked, all counted against the send limit.

use std::time::Duration;

use fake_discord::control::{CommandOutcome, CommandRecord, Counters, Rule, Violation};
use fake_discord::rules::shard_for_guild;
use fake_discord::world;
use serde_json::{Value, json};

use crate::client::{Client, INTENTS};
use crate::fixture::{self, TOKEN};

/// GUILD_MEMBERS | GUILD_PRESENCES on top of the usual intents.
const MEMBER_INTENTS: u64 = INTENTS | (1 << 1) | (1 << 8);

fn config() -> fake_discord::Config {
    fake_discord::Config {
        guilds: 20,
        identify_window_ms: 0,
        ..fixture::config()
    }
}

fn presence() -> Value {
    json!({"op": 3, "d": {"since": null, "activities": [{"name": "tests", "type": 0}],
                          "status": "online", "afk": false}})
}

fn voice(guild: u64) -> Value {
    json!({"op": 4, "d": {"guild_id": guild.to_string(),
                          "channel_id": world::voice_channel_id(guild).to_string(),
                          "self_mute": false, "self_deaf": true}})
}

fn all_members(guild: u64, nonce: &str) -> Value {
    json!({"op": 8, "d": {"guild_id": guild.to_string(), "query": "", "limit": 0, "nonce": nonce}})
}

/// A guild of the bot's that `shard` holds.
fn guild_on(shard: [u32; 2], guilds: u32) -> u64 {
    (0..guilds)
        .map(world::guild_id)
        .find(|&g| shard_for_guild(g, shard[1]) == shard[0])
        .expect("a guild on the shard")
}

/// Reads one answer to an op 8: its chunks, in order; fails on anything else.
async fn chunks(client: &mut Client) -> anyhow::Result<Vec<Value>> {
    let mut chunks: Vec<Value> = Vec::new();
    loop {
        let chunk = client.payload().await?;
        anyhow::ensure!(chunk["t"] == "GUILD_MEMBERS_CHUNK", "not a chunk: {chunk}");
        let d = chunk["d"].clone();
        assert_eq!(d["chunk_index"], chunks.len());
        let last = d["chunk_index"].as_u64().map(|i| i + 1) == d["chunk_count"].as_u64();
        chunks.push(d);
        if last {
            return Ok(chunks);
        }
    }
}

fn member_ids(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|c| c["members"].as_array().cloned().unwrap_or_default())
        .map(|m| m["user"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn commands(fake: &fake_discord::RunningFake, query: &str) -> Vec<CommandRecord> {
    fixture::get(fake, &format!("commands{query}")).await
}

async fn violations(fake: &fake_discord::RunningFake) -> Vec<Violation> {
    fixture::get(fake, "violations").await
}

#[tokio::test]
async fn presence_voice_and_unmodelled_commands_are_recorded_per_session() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let before = fake.state().clock.now_ms();
    let mut a = Client::ready(&fake.gateway_url(), TOKEN, [0, 2], INTENTS).await?;
    let mut b = Client::ready(&fake.gateway_url(), TOKEN, [1, 2], INTENTS).await?;
    let guild = guild_on([0, 2], 20);
    a.send(presence()).await?;
    a.send(voice(guild)).await?;
    a.send(json!({"op": 31, "d": {"guild_ids": [guild.to_string()]}}))
        .await?;
    a.send(json!({"op": 43, "d": {"guild_id": guild.to_string(), "fields": ["status"]}}))
        .await?;
    a.sync().await?;
    b.send(presence()).await?;
    b.sync().await?;

    let all = commands(&fake, "").await;
    let ops: Vec<(u32, u8, CommandOutcome)> =
        all.iter().map(|c| (c.shard, c.op, c.outcome)).collect();
    use CommandOutcome::Accepted;
    assert_eq!(
        ops,
        vec![
            (0, 3, Accepted),
            (0, 4, Accepted),
            (0, 31, Accepted),
            (0, 43, Accepted),
            (1, 3, Accepted)
        ]
    );
    assert_eq!(all[1].d, voice(guild)["d"]);
    assert!(all.iter().all(|c| c.at_ms >= before && c.num_shards == 2));
    assert!(all.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    assert_ne!(all[0].session_id, all[4].session_id);

    let shard1 = commands(&fake, "?shard=1&num_shards=2").await;
    assert_eq!(shard1, vec![all[4].clone()]);
    let voices = commands(&fake, &format!("?session_id={}&op=4", all[0].session_id)).await;
    assert_eq!(voices, vec![all[1].clone()]);
    let counters: Counters = fixture::get(&fake, "counters").await;
    assert_eq!((counters.commands, counters.violations), (5, 0));
    Ok(())
}

#[tokio::test]
async fn commands_that_break_their_shape_close_4001() -> anyhow::Result<()> {
    let guild = world::guild_id(1).to_string();
    let ids: Vec<String> = (0..101).map(|i| world::user_id(i).to_string()).collect();
    let cases = [
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "away", "afk": false}}),
        json!({"op": 3, "d": {"activities": [], "status": "online", "afk": false}}),
        json!({"op": 4, "d": {"guild_id": guild, "channel_id": null, "self_mute": false}}),
        json!({"op": 8, "d": {"guild_id": guild, "limit": 0}}),
        json!({"op": 8, "d": {"guild_id": guild, "query": ""}}),
        json!({"op": 8, "d": {"guild_id": [guild], "query": "", "limit": 0}}),
        json!({"op": 8, "d": {"guild_id": guild, "user_ids": ids}}),
    ];
    for case in cases {
        let fake = fixture::spawn(config()).await;
        let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], MEMBER_INTENTS).await?;
        client.send(case.clone()).await?;
        assert_eq!(client.closed().await?, Some(4001), "{case}");
        let violations = violations(&fake).await;
        assert_eq!(violations.len(), 1, "{case}");
        assert_eq!(violations[0].rule, Rule::InvalidPayload, "{case}");
        assert!(commands(&fake, "").await.is_empty(), "{case}");
    }
    Ok(())
}

#[tokio::test]
async fn commands_count_against_the_send_limit() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        send_limit: 6,
        ..config()
    })
    .await;
    let guild = guild_on([0, 1], 20);
    // Identify, four commands and a heartbeat: six, the limit.
    let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], INTENTS).await?;
    client.send(presence()).await?;
    client.send(voice(guild)).await?;
    client.send(presence()).await?;
    client.send(voice(guild)).await?;
    client.sync().await?;
    assert_eq!(commands(&fake, "").await.len(), 4);
    // The seventh within the window.
    client.send(presence()).await?;
    assert_eq!(client.closed().await?, Some(4008));
    let violations = violations(&fake).await;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, Rule::SendRateLimit);
    Ok(())
}

#[tokio::test]
async fn payloads_over_4096_bytes_close_4002() -> anyhow::Result<()> {
    /// A heartbeat padded to `size` bytes of JSON.
    fn padded_heartbeat(size: usize) -> String {
        let empty = r#"{"op":1,"d":null,"pad":""}"#;
        format!(
            r#"{{"op":1,"d":null,"pad":"{}"}}"#,
            "x".repeat(size - empty.len())
        )
    }
    let fake = fixture::spawn(config()).await;
    let mut client = Client::connect(&fake.gateway_url(), true).await?;
    client.expect_op(10).await?;
    client.send_text(&padded_heartbeat(4_096)).await?;
    client.expect_op(11).await?;
    client.send_text(&padded_heartbeat(4_097)).await?;
    assert_eq!(client.closed().await?, Some(4002));
    let seen = violations(&fake).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].rule, Rule::DecodeError);
    assert!(seen[0].details.contains("4097"), "{seen:?}");

    // Past the WebSocket's own cap too.
    let fake = fixture::spawn(config()).await;
    let mut client = Client::connect(&fake.gateway_url(), true).await?;
    client.expect_op(10).await?;
    client.send_text(&padded_heartbeat(2 << 20)).await?;
    assert_eq!(client.closed().await?, Some(4002));
    assert_eq!(violations(&fake).await[0].rule, Rule::DecodeError);
    Ok(())
}

#[tokio::test]
async fn all_members_come_in_chunks_once_per_guild_per_window_bot_wide() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        member_request_window_ms: 60_000,
        ..config()
    })
    .await;
    let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], MEMBER_INTENTS).await?;
    // Guild 1 has 3,891 members: four chunks.
    let (index, guild) = (1, world::guild_id(1));
    let count = world::member_count(index) as usize;
    client.send(all_members(guild, "first")).await?;
    let answer = chunks(&mut client).await?;
    assert_eq!(answer.len(), count.div_ceil(1_000));
    let guild_id = guild.to_string();
    assert!(answer.iter().all(|c| c["nonce"] == "first"
        && c["guild_id"] == guild_id
        && c["chunk_count"] == answer.len()));
    let ids = member_ids(&answer);
    assert_eq!(ids.len(), count);
    assert_eq!(
        ids[0],
        fake.state().bot.id.to_string(),
        "the bot is a member"
    );
    assert_eq!(
        ids[1],
        world::user_id(u64::from(index)).to_string(),
        "so is the owner"
    );

    // Again within the window: RATE_LIMITED, no chunk.
    client.send(all_members(guild, "second")).await?;
    let limited = client.payload().await?;
    assert_eq!(limited["t"], "RATE_LIMITED", "{limited}");
    let d = &limited["d"];
    assert_eq!(d["opcode"], 8);
    assert_eq!(
        d["meta"],
        json!({"guild_id": guild.to_string(), "nonce": "second"})
    );
    let retry_after = d["retry_after"].as_f64().expect("a float");
    assert!(retry_after > 0.0 && retry_after <= 60.0, "{retry_after}");

    // The limit is per guild: another guild is answered...
    client
        .send(all_members(world::guild_id(2), "other"))
        .await?;
    assert_eq!(member_ids(&chunks(&mut client).await?).len(), 565);
    // ...and so is a smaller request for the same guild.
    client
        .send(json!({"op": 8, "d": {"guild_id": guild.to_string(), "query": "", "limit": 10}}))
        .await?;
    assert_eq!(member_ids(&chunks(&mut client).await?).len(), 10);

    // Per bot, not per session: another layout's session is limited too.
    let mut other = Client::ready(&fake.gateway_url(), TOKEN, [0, 2], MEMBER_INTENTS).await?;
    let on_other = guild_on([0, 2], 20);
    other.send(all_members(on_other, "x")).await?;
    chunks(&mut other).await?;
    client.send(all_members(on_other, "y")).await?;
    assert_eq!(client.payload().await?["t"], "RATE_LIMITED");

    let outcomes: Vec<(CommandOutcome, u32)> = commands(&fake, "?op=8")
        .await
        .iter()
        .map(|c| (c.outcome, c.chunks))
        .collect();
    use CommandOutcome::{Answered, RateLimited};
    assert_eq!(
        outcomes,
        vec![
            (Answered, 4),
            (RateLimited, 0),
            (Answered, 1),
            (Answered, 1),
            (Answered, on_other_chunks(on_other)),
            (RateLimited, 0)
        ]
    );
    let limited = commands(&fake, "?op=8").await;
    assert_eq!(limited[1].retry_after, Some(retry_after));
    let rules: Vec<Rule> = violations(&fake).await.iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec![Rule::RequestAllMembersTooFast; 2]);
    Ok(())
}

fn on_other_chunks(guild: u64) -> u32 {
    let index = world::guild_index(guild, 20).expect("a guild");
    world::member_count(index).div_ceil(1_000)
}

#[tokio::test]
async fn a_client_that_waits_retry_after_is_answered() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        member_request_window_ms: 400,
        ..config()
    })
    .await;
    let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], MEMBER_INTENTS).await?;
    let guild = world::guild_id(2);
    client.send(all_members(guild, "1")).await?;
    chunks(&mut client).await?;
    client.send(all_members(guild, "2")).await?;
    let limited = client.expect_dispatch("RATE_LIMITED").await?;
    let retry_after = limited["d"]["retry_after"].as_f64().expect("a float");
    // What Discord asks of a client: wait `retry_after`, then ask again.
    tokio::time::sleep(Duration::from_secs_f64(retry_after)).await;
    client.send(all_members(guild, "3")).await?;
    let answer = chunks(&mut client).await?;
    assert_eq!(answer[0]["nonce"], "3");
    assert_eq!(member_ids(&answer).len(), 565);
    let rules: Vec<Rule> = violations(&fake).await.iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec![Rule::RequestAllMembersTooFast]);
    Ok(())
}

#[tokio::test]
async fn user_ids_queries_and_presences_select_members() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], MEMBER_INTENTS).await?;
    let (index, guild) = (2u32, world::guild_id(2));
    let owner = world::user_id(u64::from(index));
    let stranger = world::user_id(u64::from(index) + 5_000);
    let bot = fake.state().bot.id;
    client
        .send(
            json!({"op": 8, "d": {"guild_id": guild.to_string(), "presences": true,
              "user_ids": [owner.to_string(), stranger.to_string(), bot.to_string()]}}),
        )
        .await?;
    let answer = chunks(&mut client).await?;
    assert_eq!(answer.len(), 1);
    assert_eq!(
        member_ids(&answer),
        vec![owner.to_string(), bot.to_string()]
    );
    assert_eq!(answer[0]["not_found"], json!([stranger.to_string()]));
    assert_eq!(answer[0]["presences"].as_array().map(Vec::len), Some(2));
    assert!(answer[0].get("nonce").is_none());

    client
        .send(json!({"op": 8, "d": {"guild_id": guild.to_string(), "query": "FAKE", "limit": 5}}))
        .await?;
    assert_eq!(
        member_ids(&chunks(&mut client).await?),
        vec![bot.to_string()]
    );
    client
        .send(json!({"op": 8, "d": {"guild_id": guild.to_string(), "query": "nobody", "limit": 5}}))
        .await?;
    let none = chunks(&mut client).await?;
    assert_eq!(
        (none.len(), member_ids(&none).len()),
        (1, 0),
        "one empty chunk"
    );

    // Without GUILD_PRESENCES, `presences: true` is ignored.
    let mut plain = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], INTENTS | (1 << 1)).await?;
    plain
        .send(
            json!({"op": 8, "d": {"guild_id": guild.to_string(), "presences": true,
              "user_ids": owner.to_string()}}),
        )
        .await?;
    let answer = chunks(&mut plain).await?;
    assert!(answer[0].get("presences").is_none(), "{}", answer[0]);
    assert_eq!(violations(&fake).await, vec![]);
    Ok(())
}

#[tokio::test]
async fn commands_for_guilds_off_the_shard_or_without_the_intent_go_unanswered()
-> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    // No GUILD_MEMBERS intent.
    let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 2], INTENTS).await?;
    let elsewhere = guild_on([1, 2], 20);
    let here = guild_on([0, 2], 20);
    client.send(voice(elsewhere)).await?;
    client
        .send(json!({"op": 8, "d": {"guild_id": elsewhere.to_string(), "user_ids": []}}))
        .await?;
    client.send(all_members(here, "no-intent")).await?;
    client.sync().await?;
    fixture::marker(&fake, here).await;
    let next = client.payload().await?;
    assert_eq!(next["t"], "GUILD_UPDATE", "nothing answered first: {next}");

    let rules: Vec<Rule> = violations(&fake).await.iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        vec![
            Rule::GuildNotOnShard,
            Rule::GuildNotOnShard,
            Rule::MembersIntentRequired
        ]
    );
    let outcomes: Vec<(u8, CommandOutcome)> = commands(&fake, "")
        .await
        .iter()
        .map(|c| (c.op, c.outcome))
        .collect();
    use CommandOutcome::Ignored;
    assert_eq!(outcomes, vec![(4, Ignored), (8, Ignored), (8, Ignored)]);

    // A prefix query needs no intent.
    client
        .send(json!({"op": 8, "d": {"guild_id": here.to_string(), "query": "user", "limit": 1}}))
        .await?;
    assert_eq!(member_ids(&chunks(&mut client).await?).len(), 1);
    Ok(())
}

#[tokio::test]
async fn heartbeats_later_than_interval_plus_slack_are_recorded() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        heartbeat_interval_ms: 500,
        heartbeat_slack_ms: 250,
        ..config()
    })
    .await;
    let mut client = Client::ready(&fake.gateway_url(), TOKEN, [0, 1], INTENTS).await?;
    // On time: well inside 500 + 250 ms of the previous one.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        client.sync().await?;
    }
    let counters: Counters = fixture::get(&fake, "counters").await;
    assert_eq!(counters.heartbeats_late, 0);
    // Late: 1 s after the previous one (the connection closes only after 1.5 s).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    client.sync().await?;
    let late: Vec<fake_discord::control::LateHeartbeat> =
        fixture::get(&fake, "late_heartbeats?shard=0&num_shards=1").await;
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(
        late[0].gap_ms >= 1_000 && late[0].late_ms >= 500,
        "{late:?}"
    );
    assert!(late[0].session_id.is_some());
    let elsewhere: Vec<fake_discord::control::LateHeartbeat> =
        fixture::get(&fake, "late_heartbeats?shard=1").await;
    assert!(elsewhere.is_empty());
    let counters: Counters = fixture::get(&fake, "counters").await;
    assert_eq!((counters.heartbeats_late, counters.violations), (1, 0));
    Ok(())
}
