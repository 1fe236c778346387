//! Faults on demand: op 7, op 9 (both kinds), zombie, heartbeat request, close codes, dropped
//! TCP, delayed frames; each aimed at one shard or all.

use std::time::{Duration, Instant};

use fake_discord::control::{FaultResult, SessionInfo};
use fake_discord::world;
use serde_json::{Value, json};

use crate::client::{Client, Frame};
use crate::fixture::{self, TOKEN};

fn config() -> fake_discord::Config {
    fake_discord::Config {
        guilds: 2,
        identify_window_ms: 0,
        reconnect_grace_ms: 200,
        ..fixture::config()
    }
}

/// A ready session of shard [0, 1] with its GUILD_CREATEs read.
async fn session(fake: &fake_discord::RunningFake) -> anyhow::Result<(Client, Value)> {
    let (mut client, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    for _ in 0..2 {
        client.expect_dispatch("GUILD_CREATE").await?;
    }
    Ok((client, ready))
}

async fn fault(fake: &fake_discord::RunningFake, body: Value) -> u32 {
    let result: FaultResult = fixture::post(fake, "faults", body).await;
    result.affected
}

/// Dispatches a marker event to the session's guilds.
async fn marker(fake: &fake_discord::RunningFake) {
    fixture::marker(fake, world::guild_id(0)).await;
}

async fn sessions(fake: &fake_discord::RunningFake) -> Vec<SessionInfo> {
    fixture::get(fake, "sessions").await
}

#[tokio::test]
async fn reconnect_sends_op7_then_closes_resumably_after_the_grace() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut client, ready) = session(&fake).await?;
    assert_eq!(fault(&fake, json!({"kind": "reconnect"})).await, 1);
    client.expect_op(7).await?;
    assert_eq!(client.closed().await?, Some(4000));
    let seq = client.seq.expect("seq");
    let mut client = Client::connect(
        ready["resume_gateway_url"].as_str().unwrap_or_default(),
        true,
    )
    .await?;
    client.expect_op(10).await?;
    client
        .resume(TOKEN, ready["session_id"].as_str().unwrap_or_default(), seq)
        .await?;
    client.expect_dispatch("RESUMED").await?;
    Ok(())
}

#[tokio::test]
async fn invalid_session_true_keeps_the_session_false_ends_it() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut client, _) = session(&fake).await?;
    fault(&fake, json!({"kind": "invalid_session", "resumable": true})).await;
    assert_eq!(client.expect_op(9).await?["d"], true);
    assert_eq!(sessions(&fake).await.len(), 1);
    fault(
        &fake,
        json!({"kind": "invalid_session", "resumable": false}),
    )
    .await;
    assert_eq!(client.expect_op(9).await?["d"], false);
    assert!(sessions(&fake).await.is_empty());
    // The connection may Identify again.
    client
        .identify(TOKEN, [0, 1], crate::client::INTENTS)
        .await?;
    client.expect_dispatch("READY").await?;
    Ok(())
}

#[tokio::test]
async fn a_zombie_stops_acking_until_told_otherwise() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut client, _) = session(&fake).await?;
    fault(&fake, json!({"kind": "zombie"})).await;
    client.heartbeat().await?;
    marker(&fake).await;
    let next = client.payload().await?;
    assert_eq!(
        next["t"], "GUILD_UPDATE",
        "no ACK before the marker: {next}"
    );
    fault(&fake, json!({"kind": "zombie", "enabled": false})).await;
    client.heartbeat().await?;
    client.expect_op(11).await?;
    Ok(())
}

#[tokio::test]
async fn a_heartbeat_request_is_op1() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut client, _) = session(&fake).await?;
    fault(&fake, json!({"kind": "heartbeat_request"})).await;
    let request = client.expect_op(1).await?;
    assert_eq!(request["d"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn close_codes_decide_whether_the_session_survives() -> anyhow::Result<()> {
    for (code, survives) in [
        (4000, true),
        (4008, true),
        (4009, false),
        (4007, false),
        (1000, false),
    ] {
        let fake = fixture::spawn(config()).await;
        let (mut client, _) = session(&fake).await?;
        fault(&fake, json!({"kind": "close", "code": code})).await;
        assert_eq!(client.closed().await?, Some(code));
        let left = sessions(&fake).await;
        assert_eq!(left.len() == 1, survives, "close {code}: {left:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_dropped_connection_has_no_close_frame_and_stays_resumable() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut client, _) = session(&fake).await?;
    fault(&fake, json!({"kind": "drop"})).await;
    match client.frame().await? {
        Frame::Closed(None) => {}
        other => panic!("expected a drop, got {other:?}"),
    }
    // The fake notices its own drop at once.
    let left = sessions(&fake).await;
    assert!(left.len() == 1 && !left[0].connected, "{left:?}");
    Ok(())
}

#[tokio::test]
async fn delayed_frames_arrive_late() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut client, _) = session(&fake).await?;
    fault(&fake, json!({"kind": "delay", "ms": 300})).await;
    let start = Instant::now();
    marker(&fake).await;
    client.expect_dispatch("GUILD_UPDATE").await?;
    assert!(start.elapsed() >= Duration::from_millis(300));
    fault(&fake, json!({"kind": "delay", "ms": 0})).await;
    let start = Instant::now();
    marker(&fake).await;
    client.expect_dispatch("GUILD_UPDATE").await?;
    assert!(start.elapsed() < Duration::from_millis(300));
    Ok(())
}

#[tokio::test]
async fn faults_aim_at_one_shard_or_all() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        guilds: 4,
        ..config()
    })
    .await;
    let mut clients = Vec::new();
    for shard in 0..2 {
        let (client, _) = Client::start(&fake.gateway_url(), TOKEN, [shard, 2]).await?;
        clients.push(client);
    }
    assert_eq!(
        fault(&fake, json!({"kind": "heartbeat_request", "shard": 1})).await,
        1
    );
    assert_eq!(
        fault(
            &fake,
            json!({"kind": "heartbeat_request", "shard": 1, "num_shards": 3})
        )
        .await,
        0
    );
    assert_eq!(fault(&fake, json!({"kind": "heartbeat_request"})).await, 2);
    clients[1].expect_op(1).await?;
    Ok(())
}
