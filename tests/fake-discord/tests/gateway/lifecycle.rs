//! Connect, Hello, heartbeats, Identify, READY and one GUILD_CREATE per routed guild.

use fake_discord::control::{Rule, SessionInfo, Violation};
use fake_discord::rules::shard_for_guild;
use serde_json::{Value, json};

use crate::client::{Client, INTENTS};
use crate::fixture::{self, TOKEN};

async fn ready_then_guilds(zlib: bool) -> anyhow::Result<()> {
    let fake = fixture::spawn(fixture::config()).await;
    let mut client = Client::connect(&fake.gateway_url(), zlib).await?;
    let hello = client.expect_op(10).await?;
    assert_eq!(hello["d"]["heartbeat_interval"], 41_250);

    // Heartbeats are answered before Identify too.
    client.heartbeat().await?;
    client.expect_op(11).await?;

    client
        .identify(&format!("Bot {TOKEN}"), [1, 2], INTENTS)
        .await?;
    let ready = client.expect_dispatch("READY").await?;
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(d["shard"], json!([1, 2]));
    assert_eq!(d["user"]["id"], fake.state().bot.id.to_string());
    assert_eq!(d["application"]["id"], fake.state().bot.id.to_string());
    assert!(
        d["resume_gateway_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/resume") && u.starts_with("ws://")),
        "{d}"
    );
    let guilds: Vec<u64> = d["guilds"]
        .as_array()
        .expect("guilds")
        .iter()
        .map(|g| {
            assert_eq!(g["unavailable"], true);
            g["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("snowflake")
        })
        .collect();
    assert_eq!(guilds.len(), 5, "10 guilds over 2 shards");
    assert!(guilds.iter().all(|&g| shard_for_guild(g, 2) == 1));

    let mut created = Vec::new();
    for expected_seq in 2..=6 {
        let event = client.expect_op(0).await?;
        assert_eq!(event["t"], "GUILD_CREATE");
        assert_eq!(event["s"], expected_seq);
        created.push(
            event["d"]["id"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .expect("id"),
        );
    }
    assert_eq!(created, guilds);

    client.heartbeat().await?;
    let ack = client.expect_op(11).await?;
    assert_eq!(ack["d"], Value::Null);

    let sessions: Vec<SessionInfo> = fixture::get(&fake, "sessions").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0].shard, sessions[0].num_shards), (1, 2));
    assert!(sessions[0].ready && sessions[0].connected);
    assert_eq!(sessions[0].seq, 6);
    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations, vec![]);
    Ok(())
}

#[tokio::test]
async fn zlib_stream_connection_gets_ready_and_every_routed_guild() -> anyhow::Result<()> {
    ready_then_guilds(true).await
}

#[tokio::test]
async fn zstd_stream_connection_gets_ready_and_every_routed_guild() -> anyhow::Result<()> {
    let fake = fixture::spawn(fixture::config()).await;
    let mut client = Client::connect_zstd(&fake.gateway_url()).await?;
    client.expect_op(10).await?;
    client.identify(TOKEN, [0, 2], INTENTS).await?;
    let ready = client.expect_dispatch("READY").await?;
    assert_eq!(ready["d"]["guilds"].as_array().map(Vec::len), Some(5));
    for seq in 2..=6 {
        let event = client.expect_op(0).await?;
        assert_eq!(
            (event["t"].as_str(), event["s"].as_u64()),
            (Some("GUILD_CREATE"), Some(seq))
        );
    }
    client.heartbeat().await?;
    client.expect_op(11).await?;
    Ok(())
}

#[tokio::test]
async fn uncompressed_connection_gets_ready_and_every_routed_guild() -> anyhow::Result<()> {
    ready_then_guilds(false).await
}

#[tokio::test]
async fn a_missed_heartbeat_closes_the_connection_and_is_reported() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        heartbeat_interval_ms: 100,
        ..fixture::config()
    })
    .await;
    let mut client = Client::connect(&fake.gateway_url(), true).await?;
    client.expect_op(10).await?;
    // Interval 100 ms + tolerance max(50 ms, 1 s): closed after about 1.1 s.
    let started = std::time::Instant::now();
    assert_eq!(client.closed().await?, Some(4000));
    assert!(started.elapsed() >= std::time::Duration::from_millis(1_000));
    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, Rule::HeartbeatTimeout);
    Ok(())
}

#[tokio::test]
async fn a_quarter_million_guilds_spread_over_a_hundred_shards() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        guilds: 250_000,
        ..fixture::config()
    })
    .await;
    let bot: Value = fixture::http()
        .get(format!("{}/v10/gateway/bot", fake.api_url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(bot["shards"], 250);

    let (mut client, ready) = Client::start(&fake.gateway_url(), TOKEN, [7, 100]).await?;
    let guilds = ready["guilds"].as_array().map_or(0, Vec::len);
    assert_eq!(guilds, 2_500);
    for _ in 0..guilds {
        let event = client.expect_op(0).await?;
        assert_eq!(event["t"], "GUILD_CREATE");
        let id = event["d"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("id");
        assert_eq!(shard_for_guild(id, 100), 7);
    }
    // 99 shards would put 2,526 guilds on some: sharding required.
    let mut too_few = Client::connect(&fake.gateway_url(), true).await?;
    too_few.expect_op(10).await?;
    too_few.identify(TOKEN, [0, 99], INTENTS).await?;
    assert_eq!(too_few.closed().await?, Some(4011));
    Ok(())
}
