//! The session history (`/control/session_history`: how far each session was written, how it
//! ended) and the overlap check (`/control/overlaps`: two live sessions of one shard).

use fake_discord::control::{Counters, SessionEnd, SessionHistory, SessionOverlap};
use serde_json::json;

use crate::client::Client;
use crate::fixture::{self, TOKEN};

/// Two guilds, and Identify windows short enough for a test to identify one shard twice.
fn config() -> fake_discord::Config {
    fake_discord::Config {
        guilds: 2,
        identify_window_ms: 1,
        ..fixture::config()
    }
}

async fn session_id(client: &mut Client, ready: &serde_json::Value) -> anyhow::Result<String> {
    for _ in 0..2 {
        client.expect_dispatch("GUILD_CREATE").await?;
    }
    Ok(ready["session_id"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_second_live_session_of_a_shard_is_an_overlap_and_a_resume_is_not() -> anyhow::Result<()>
{
    let fake = fixture::spawn(config()).await;
    let (mut first, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    let first_id = session_id(&mut first, &ready).await?;
    let resume_url = ready["resume_gateway_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Another layout's shard 0 is another shard.
    let (_other_layout, _) = Client::start(&fake.gateway_url(), TOKEN, [0, 2]).await?;
    let overlaps: Vec<SessionOverlap> = fixture::get(&fake, "overlaps").await;
    assert!(overlaps.is_empty(), "{overlaps:?}");

    // The same session resumed on a new connection replaces the old one: still one session.
    let mut again = Client::connect(&resume_url, true).await?;
    again.expect_op(10).await?;
    again
        .resume(&format!("Bot {TOKEN}"), &first_id, first.seq.unwrap_or(0))
        .await?;
    again.expect_dispatch("RESUMED").await?;
    let overlaps: Vec<SessionOverlap> = fixture::get(&fake, "overlaps").await;
    assert!(overlaps.is_empty(), "{overlaps:?}");

    // A new session of shard [0, 1] while the first is attached: two live sessions.
    let (mut second, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    let second_id = session_id(&mut second, &ready).await?;
    let overlaps: Vec<SessionOverlap> = fixture::get(&fake, "overlaps").await;
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert_eq!(
        (overlaps[0].shard, overlaps[0].num_shards),
        (0, 1),
        "{overlaps:?}"
    );
    assert_eq!(overlaps[0].session_id, second_id);
    assert_eq!(overlaps[0].live_session_id, first_id);
    let counters: Counters = fixture::get(&fake, "counters").await;
    assert_eq!(counters.session_overlaps, 1);
    Ok(())
}

#[tokio::test]
async fn the_history_keeps_ended_sessions_with_what_was_written_and_why_they_ended()
-> anyhow::Result<()> {
    let fake = fixture::spawn(config()).await;
    let (mut invalidated, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    let invalidated_id = session_id(&mut invalidated, &ready).await?;
    let affected: fake_discord::control::FaultResult = fixture::post(
        &fake,
        "faults",
        json!({"kind": "invalid_session", "resumable": false, "session_id": invalidated_id}),
    )
    .await;
    assert_eq!(affected.affected, 1);
    invalidated.expect_op(9).await?;

    let (mut closed, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    let closed_id = session_id(&mut closed, &ready).await?;
    closed.close(1000).await?;

    let (mut live, ready) = Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    let live_id = session_id(&mut live, &ready).await?;
    live.sync().await?;

    let history: Vec<SessionHistory> = fixture::get(&fake, "session_history").await;
    let ids: Vec<&str> = history.iter().map(|h| h.session_id.as_str()).collect();
    assert_eq!(ids, [&invalidated_id, &closed_id, &live_id], "{history:?}");
    // READY and two GUILD_CREATEs written to each.
    assert!(history.iter().all(|h| h.written_seq == 3), "{history:?}");
    assert_eq!(history[0].ended, Some(SessionEnd::InvalidSession));
    assert!(
        history[0]
            .ended
            .is_some_and(SessionEnd::invalidated_by_gateway)
    );
    assert_eq!(
        history[1].ended,
        Some(SessionEnd::Closed { code: Some(1000) })
    );
    assert!(
        !history[1]
            .ended
            .is_some_and(SessionEnd::invalidated_by_gateway)
    );
    assert_eq!(history[2].ended, None);
    let overlaps: Vec<SessionOverlap> = fixture::get(&fake, "overlaps").await;
    assert!(overlaps.is_empty(), "one after the other: {overlaps:?}");
    Ok(())
}
