//! The world's events: routed by the sharding formula to every session of every layout side by
//! side, guild-less ones to shard 0 only, filtered by intents, and the replies report.

use std::collections::HashSet;
use std::time::Duration;

use fake_discord::control::{DispatchResult, LoadStatus, MessagesCreated, RepliesReport};
use fake_discord::rules::shard_for_guild;
use fake_discord::world;
use serde_json::{Value, json};

use crate::client::{Client, INTENTS};
use crate::fixture::{self, TOKEN};

/// Identifies `shard` and reads through its GUILD_CREATEs.
async fn ready(
    fake: &fake_discord::RunningFake,
    shard: [u32; 2],
    intents: u64,
) -> anyhow::Result<Client> {
    Client::ready(&fake.gateway_url(), TOKEN, shard, intents).await
}

fn id_of(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("snowflake")
}

#[tokio::test]
async fn events_reach_every_layout_that_routes_their_guild() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        // Several sessions of shard 0: no Identify window in these tests.
        identify_window_ms: 0,
        ..fixture::config()
    })
    .await;
    // Two layouts side by side: [0,1] and [0,2],[1,2].
    let mut whole = ready(&fake, [0, 1], INTENTS).await?;
    let mut halves = [
        ready(&fake, [0, 2], INTENTS).await?,
        ready(&fake, [1, 2], INTENTS).await?,
    ];

    let mut expected_half = Vec::new();
    let mut ids = Vec::new();
    for index in 0..6 {
        let guild = world::guild_id(index);
        let created: MessagesCreated =
            fixture::post(&fake, "messages", json!({"guild_id": guild})).await;
        ids.push(created.ids[0].parse::<u64>()?);
        expected_half.push(shard_for_guild(guild, 2) as usize);
    }
    let mut got_half = [Vec::new(), Vec::new()];
    for (i, &half) in expected_half.iter().enumerate() {
        let event = whole.expect_dispatch("MESSAGE_CREATE").await?;
        assert_eq!(id_of(&event["d"]["id"]), ids[i]);
        let event = halves[half].expect_dispatch("MESSAGE_CREATE").await?;
        assert_eq!(id_of(&event["d"]["id"]), ids[i]);
        got_half[half].push(ids[i]);
    }
    // Unique, increasing snowflakes stamped with the current time.
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let stamped = fake_discord::snowflake::timestamp_ms(ids[0]);
    assert!(now.abs_diff(stamped) < 10_000, "{stamped} vs {now}");

    // A DM has no guild: shard 0 of each layout only.
    let dm: MessagesCreated = fixture::post(&fake, "messages", json!({})).await;
    let event = whole.expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(event["d"]["id"], dm.ids[0]);
    assert!(event["d"].get("guild_id").is_none());
    let event = halves[0].expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(event["d"]["id"], dm.ids[0]);

    // A marker through both halves proves shard 1 got nothing else in between.
    for (half, client) in halves.iter_mut().enumerate() {
        let guild = world::guild_id(if shard_for_guild(world::guild_id(0), 2) as usize == half {
            0
        } else {
            1
        });
        let _: DispatchResult = fixture::post(
            &fake,
            "dispatch",
            json!({"t": "GUILD_UPDATE", "guild_id": guild, "d": {"id": guild.to_string()}}),
        )
        .await;
        let next = client.payload().await?;
        assert_eq!(next["t"], "GUILD_UPDATE", "shard {half} of 2 got {next}");
    }
    Ok(())
}

#[tokio::test]
async fn intents_filter_events_and_message_content() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        identify_window_ms: 0,
        guilds: 1,
        ..fixture::config()
    })
    .await;
    let guild = world::guild_id(0);
    // GUILDS | GUILD_MESSAGES without MESSAGE_CONTENT.
    let mut no_content = ready(&fake, [0, 1], 1 | (1 << 9)).await?;
    // GUILDS only: no MESSAGE_CREATE at all.
    let mut no_messages = ready(&fake, [0, 1], 1).await?;
    let mut full = ready(&fake, [0, 1], INTENTS).await?;

    let _: MessagesCreated = fixture::post(
        &fake,
        "messages",
        json!({"guild_id": guild, "content": "secret words"}),
    )
    .await;
    let event = full.expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(event["d"]["content"], "secret words");
    let event = no_content.expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(event["d"]["content"], "");

    let _: DispatchResult = fixture::post(
        &fake,
        "dispatch",
        json!({"t": "GUILD_UPDATE", "guild_id": guild, "d": {"id": guild.to_string()}}),
    )
    .await;
    let next = no_messages.payload().await?;
    assert_eq!(
        next["t"], "GUILD_UPDATE",
        "the message never reached it: {next}"
    );
    Ok(())
}

#[tokio::test]
async fn replies_are_counted_per_synthetic_message() -> anyhow::Result<()> {
    let fake = fixture::spawn(fixture::config()).await;
    let since = fake.state().clock.now_ms();
    let guild = world::guild_id(3);
    let created: MessagesCreated =
        fixture::post(&fake, "messages", json!({"guild_id": guild, "count": 3})).await;
    let http = fixture::http();
    let channel = world::text_channel_id(guild);
    let reply = |target: &str| {
        http.post(format!(
            "{}/v10/channels/{channel}/messages",
            fake.api_url()
        ))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({"content": "pong", "message_reference": {"message_id": target}}))
        .send()
    };
    // One reply to the first, two to the second, none to the third.
    for target in [&created.ids[0], &created.ids[1], &created.ids[1]] {
        let message: Value = reply(target).await?.error_for_status()?.json().await?;
        assert_eq!(message["author"]["bot"], true);
        assert_eq!(message["message_reference"]["message_id"], *target);
        assert_eq!(message["channel_id"], channel.to_string());
    }
    let report: RepliesReport = fixture::get(&fake, &format!("replies?since_ms={since}")).await;
    assert_eq!(
        (
            report.messages,
            report.exactly_once,
            report.multiple,
            report.none,
            report.replies
        ),
        (3, 1, 1, 1, 3)
    );
    assert_eq!(report.unanswered_sample, vec![created.ids[2].clone()]);
    assert_eq!(report.multiple_sample, vec![created.ids[1].clone()]);

    // REST errors have Discord's shape.
    let unknown = http
        .post(format!("{}/v10/channels/42/messages", fake.api_url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({"content": "x"}))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await?["code"], 10_003);
    let empty = http
        .post(format!(
            "{}/v10/channels/{channel}/messages",
            fake.api_url()
        ))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({"content": ""}))
        .send()
        .await?;
    assert_eq!(empty.status(), 400);
    let anonymous = http
        .post(format!(
            "{}/v10/channels/{channel}/messages",
            fake.api_url()
        ))
        .json(&json!({"content": "x"}))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    Ok(())
}

#[tokio::test]
async fn a_create_with_an_enforced_nonce_returns_the_first_message_and_counts_once()
-> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        guilds: 2,
        ..fixture::config()
    })
    .await;
    let mut client = ready(&fake, [0, 1], INTENTS).await?;
    let since = fake.state().clock.now_ms();
    let guild = world::guild_id(0);
    let created: MessagesCreated =
        fixture::post(&fake, "messages", json!({"guild_id": guild, "count": 2})).await;
    for _ in 0..2 {
        client.expect_dispatch("MESSAGE_CREATE").await?;
    }
    let http = fixture::http();
    let create = |channel: u64, body: Value| {
        http.post(format!(
            "{}/v10/channels/{channel}/messages",
            fake.api_url()
        ))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&body)
        .send()
    };
    let channel = world::text_channel_id(guild);
    let reply = |target: &str, nonce: Value, enforce: bool| {
        json!({"content": "pong", "message_reference": {"message_id": target},
               "nonce": nonce, "enforce_nonce": enforce})
    };
    // Two pods answering the same message at once, with the same nonce.
    let (a, b) = tokio::join!(
        create(channel, reply(&created.ids[0], json!("r-1"), true)),
        create(channel, reply(&created.ids[0], json!("r-1"), true)),
    );
    let a: Value = a?.error_for_status()?.json().await?;
    let b: Value = b?.error_for_status()?.json().await?;
    assert_eq!(a["id"], b["id"], "one message, returned twice");
    assert_eq!(a["nonce"], "r-1");
    // Later, still within the window.
    let c: Value = create(channel, reply(&created.ids[0], json!("r-1"), true))
        .await?
        .json()
        .await?;
    assert_eq!(c["id"], a["id"]);
    // One MESSAGE_CREATE only.
    let event = client.expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(event["d"]["id"], a["id"]);
    assert_eq!(event["d"]["nonce"], "r-1");
    fixture::marker(&fake, guild).await;
    let next = client.payload().await?;
    assert_eq!(
        next["t"], "GUILD_UPDATE",
        "no second MESSAGE_CREATE: {next}"
    );

    // Without enforce_nonce, or in another channel, the nonce creates anew.
    let d: Value = create(channel, reply(&created.ids[1], json!(7), false))
        .await?
        .json()
        .await?;
    assert_eq!(d["nonce"], 7);
    let e: Value = create(channel, reply(&created.ids[1], json!(7), false))
        .await?
        .json()
        .await?;
    assert_ne!(d["id"], e["id"]);
    let elsewhere = world::text_channel_id(world::guild_id(1));
    let f: Value = create(
        elsewhere,
        json!({"content": "x", "nonce": "r-1", "enforce_nonce": true}),
    )
    .await?
    .json()
    .await?;
    assert_ne!(f["id"], a["id"]);
    let too_long = create(channel, json!({"content": "x", "nonce": "n".repeat(26)})).await?;
    assert_eq!(too_long.status(), 400);

    let report: RepliesReport = fixture::get(&fake, &format!("replies?since_ms={since}")).await;
    assert_eq!(
        (
            report.messages,
            report.exactly_once,
            report.multiple,
            report.replies
        ),
        (2, 1, 1, 3)
    );
    assert_eq!(report.deduplicated, 2);
    Ok(())
}

#[tokio::test]
async fn the_bots_reply_is_dispatched_like_any_message() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        guilds: 1,
        ..fixture::config()
    })
    .await;
    let mut client = ready(&fake, [0, 1], INTENTS).await?;
    let channel = world::text_channel_id(world::guild_id(0));
    fixture::http()
        .post(format!(
            "{}/v10/channels/{channel}/messages",
            fake.api_url()
        ))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({"content": "hi"}))
        .send()
        .await?
        .error_for_status()?;
    let event = client.expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(event["d"]["author"]["id"], fake.state().bot.id.to_string());
    assert_eq!(event["d"]["content"], "hi");
    Ok(())
}

#[tokio::test]
async fn the_load_streams_messages_at_the_configured_rate_and_stops() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        guilds: 4,
        max_concurrency: 2,
        ..fixture::config()
    })
    .await;
    let mut a = ready(&fake, [0, 2], INTENTS).await?;
    let mut b = ready(&fake, [1, 2], INTENTS).await?;
    let status: LoadStatus =
        fixture::post(&fake, "load", json!({"rate": 400, "payload_bytes": 1500})).await;
    assert!(status.running);
    let mut sizes = Vec::new();
    for client in [&mut a, &mut b] {
        for _ in 0..20 {
            let event = client.expect_dispatch("MESSAGE_CREATE").await?;
            sizes.push(event["d"].to_string().len());
        }
    }
    let average = sizes.iter().sum::<usize>() / sizes.len();
    assert!(
        (1_300..1_700).contains(&average),
        "average d size {average}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped: LoadStatus = fixture::http()
        .delete(format!("{}/load", fake.control_url()))
        .send()
        .await?
        .json()
        .await?;
    assert!(!stopped.running);
    // About 400/s for about 0.5 s and more (generous: the machine is shared).
    assert!(stopped.generated >= 100, "generated {}", stopped.generated);
    Ok(())
}
