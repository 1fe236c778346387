//! Resume: missed dispatches replayed in order, then RESUMED; what ends a session.

use std::time::Duration;

use fake_discord::control::{MessagesCreated, Rule, SessionInfo, Violation};
use serde_json::{Value, json};

use crate::client::{Client, Frame};
use crate::fixture::{self, TOKEN};

/// Identifies shard [0, 1] of a 2-guild world and reads READY and both GUILD_CREATEs.
async fn session(fake: &fake_discord::RunningFake) -> anyhow::Result<(Client, String, String)> {
    let (mut client, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    for _ in 0..2 {
        client.expect_dispatch("GUILD_CREATE").await?;
    }
    let id = ready["session_id"].as_str().unwrap_or_default().to_owned();
    let url = ready["resume_gateway_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((client, id, url))
}

fn config() -> fake_discord::Config {
    fake_discord::Config {
        guilds: 2,
        ..fixture::config()
    }
}

async fn post_messages(fake: &fake_discord::RunningFake, count: u32) -> Vec<String> {
    let guild = fake_discord::world::guild_id(0);
    let created: MessagesCreated =
        fixture::post(fake, "messages", json!({"guild_id": guild, "count": count})).await;
    created.ids
}

#[tokio::test]
async fn resume_replays_missed_dispatches_in_order_then_resumed() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (client, session_id, resume_url) = session(&fake).await?;
    let seen = client.seq.expect("seq");
    assert_eq!(seen, 3);
    client.close(4000).await?;

    // Events keep accumulating for the disconnected session.
    let ids = post_messages(&fake, 5).await;
    let mut client = Client::connect(&resume_url, true).await?;
    client.expect_op(10).await?;
    client
        .resume(&format!("Bot {TOKEN}"), &session_id, seen)
        .await?;
    for (i, id) in ids.iter().enumerate() {
        let event = client.expect_op(0).await?;
        assert_eq!(event["t"], "MESSAGE_CREATE");
        assert_eq!(event["s"], seen + 1 + i as u64);
        assert_eq!(event["d"]["id"], Value::String(id.clone()));
    }
    let resumed = client.expect_op(0).await?;
    assert_eq!(resumed["t"], "RESUMED");
    assert_eq!(resumed["s"], seen + 6);

    // Live events follow, with the session's own numbering.
    post_messages(&fake, 1).await;
    let live = client.expect_dispatch("MESSAGE_CREATE").await?;
    assert_eq!(live["s"], seen + 7);

    let sessions: Vec<SessionInfo> = fixture::get(&fake, "sessions").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].resumes, 1);
    assert!(sessions[0].connected);
    let counters: fake_discord::control::Counters = fixture::get(&fake, "counters").await;
    assert_eq!((counters.identifies, counters.resumes), (1, 1));
    assert_eq!(counters.violations, 0);
    Ok(())
}

#[tokio::test]
async fn a_resume_on_the_gateway_url_gets_op9_and_a_violation() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (client, session_id, resume_url) = session(&fake).await?;
    let seen = client.seq.expect("seq");
    client.close(4000).await?;
    // Wrong: the URL of the first connection.
    let mut wrong = Client::connect(&fake.gateway_url(), true).await?;
    wrong.expect_op(10).await?;
    wrong.resume(TOKEN, &session_id, seen).await?;
    assert_eq!(wrong.expect_op(9).await?["d"], false);
    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, Rule::ResumeNotOnResumeUrl);
    // The session was not touched: resuming where READY said works.
    let sessions: Vec<SessionInfo> = fixture::get(&fake, "sessions").await;
    assert!(
        sessions.len() == 1 && !sessions[0].connected,
        "{sessions:?}"
    );
    let mut right = Client::connect(&resume_url, true).await?;
    right.expect_op(10).await?;
    right.resume(TOKEN, &session_id, seen).await?;
    right.expect_dispatch("RESUMED").await?;
    let counters: fake_discord::control::Counters = fixture::get(&fake, "counters").await;
    assert_eq!((counters.resumes, counters.resumes_failed), (1, 1));
    Ok(())
}

#[tokio::test]
async fn a_dropped_tcp_connection_stays_resumable() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (client, session_id, resume_url) = session(&fake).await?;
    let seen = client.seq.expect("seq");
    client.drop_tcp();
    let mut client = Client::connect(&resume_url, false).await?;
    client.expect_op(10).await?;
    client.resume(TOKEN, &session_id, seen).await?;
    client.expect_dispatch("RESUMED").await?;
    Ok(())
}

#[tokio::test]
async fn sessions_closed_with_1000_or_1001_cannot_resume() -> anyhow::Result<()> {
    for code in [1000, 1001] {
        let fake = fixture::spawn(config()).await;
        let (client, session_id, resume_url) = session(&fake).await?;
        let seen = client.seq.expect("seq");
        client.close(code).await?;
        let mut client = Client::connect(&resume_url, true).await?;
        client.expect_op(10).await?;
        client.resume(TOKEN, &session_id, seen).await?;
        assert_eq!(client.expect_op(9).await?["d"], false, "close {code}");
        let sessions: Vec<SessionInfo> = fixture::get(&fake, "sessions").await;
        assert!(sessions.is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn a_session_expires_after_the_resume_window() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        // Long enough for the report below on a loaded machine (200 ms was not).
        resume_window_ms: 1_500,
        ..config()
    })
    .await;
    let (client, session_id, resume_url) = session(&fake).await?;
    let seen = client.seq.expect("seq");
    client.close(4000).await?;
    let sessions: Vec<SessionInfo> = fixture::get(&fake, "sessions").await;
    assert!(sessions[0].resumable_until_ms.is_some() && !sessions[0].connected);
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let mut client = Client::connect(&resume_url, true).await?;
    client.expect_op(10).await?;
    client.resume(TOKEN, &session_id, seen).await?;
    assert_eq!(client.expect_op(9).await?["d"], false);
    Ok(())
}

#[tokio::test]
async fn resume_with_a_future_seq_or_unknown_session_gets_op9() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (client, session_id, resume_url) = session(&fake).await?;
    let seen = client.seq.expect("seq");
    client.close(4000).await?;
    let mut client = Client::connect(&resume_url, true).await?;
    client.expect_op(10).await?;
    client.resume(TOKEN, &session_id, seen + 10).await?;
    assert_eq!(client.expect_op(9).await?["d"], false);
    client.resume(TOKEN, "no-such-session", 1).await?;
    assert_eq!(client.expect_op(9).await?["d"], false);
    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, Rule::InvalidResumeSeq);
    // The session itself is still resumable from a seq it really sent.
    client.resume(TOKEN, &session_id, seen).await?;
    client.expect_dispatch("RESUMED").await?;
    Ok(())
}

#[tokio::test]
async fn resume_with_a_wrong_token_closes_4004() -> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (client, session_id, resume_url) = session(&fake).await?;
    client.close(4000).await?;
    let mut client = Client::connect(&resume_url, true).await?;
    client.expect_op(10).await?;
    client.resume("wrong", &session_id, 1).await?;
    assert_eq!(client.closed().await?, Some(4004));
    Ok(())
}

#[tokio::test]
async fn commands_out_of_place_close_with_their_codes() -> anyhow::Result<()> {
    let cases: [(&str, u16, Rule); 5] = [
        (
            r#"{"op":3,"d":{"status":"online","since":null,"activities":[],"afk":false}}"#,
            4003,
            Rule::NotAuthenticated,
        ),
        (r#"{"op":11,"d":null}"#, 4001, Rule::UnknownOpcode),
        ("not json", 4002, Rule::DecodeError),
        (r#"{"d":null}"#, 4002, Rule::DecodeError),
        ("", 4002, Rule::DecodeError),
    ];
    for (text, code, rule) in cases {
        let fake = fixture::spawn(config()).await;
        let mut client = Client::connect(&fake.gateway_url(), true).await?;
        client.expect_op(10).await?;
        client.send_text(text).await?;
        assert_eq!(client.closed().await?, Some(code), "{text}");
        let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
        assert_eq!(violations.len(), 1, "{text}");
        assert_eq!(violations[0].rule, rule, "{text}");
    }
    // Too big: more than 4096 bytes.
    let fake = fixture::spawn(config()).await;
    let mut client = Client::connect(&fake.gateway_url(), true).await?;
    client.expect_op(10).await?;
    client
        .send(json!({"op": 1, "d": null, "padding": "x".repeat(5_000)}))
        .await?;
    assert_eq!(client.closed().await?, Some(4002));
    // A second Identify on an authenticated connection.
    let fake = fixture::spawn(config()).await;
    let (mut client, _) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    client
        .identify(TOKEN, [0, 1], crate::client::INTENTS)
        .await?;
    loop {
        if let Frame::Closed(code) = client.frame().await? {
            assert_eq!(code, Some(4005));
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn more_than_the_send_limit_closes_4008() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        send_limit: 5,
        ..config()
    })
    .await;
    let mut client = Client::connect(&fake.gateway_url(), true).await?;
    client.expect_op(10).await?;
    for _ in 0..5 {
        client.heartbeat().await?;
        client.expect_op(11).await?;
    }
    client.heartbeat().await?;
    assert_eq!(client.closed().await?, Some(4008));
    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, Rule::SendRateLimit);
    Ok(())
}
