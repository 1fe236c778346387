//! The Identify rules: bucket windows measured at arrival, the daily budget, and validation.

use std::time::Duration;

use fake_discord::control::{Counters, IdentifyOutcome, IdentifyRecord, Rule, Violation};
use serde_json::json;

use crate::client::{Client, INTENTS};
use crate::fixture::{self, TOKEN};

#[tokio::test]
async fn a_second_identify_in_a_bucket_within_the_window_gets_op9_and_a_violation()
-> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        max_concurrency: 2,
        identify_window_ms: 60_000,
        ..fixture::config()
    })
    .await;
    let (_a, _) = Client::start(&fake.gateway_url(), TOKEN, [0, 4]).await?;
    // Shard 1 is bucket 1: its own window.
    let (_b, _) = Client::start(&fake.gateway_url(), TOKEN, [1, 4]).await?;
    // Shard 2 is bucket 0 again, inside the window.
    let mut c = Client::connect(&fake.gateway_url(), true).await?;
    c.expect_op(10).await?;
    c.identify(TOKEN, [2, 4], INTENTS).await?;
    let invalid = c.expect_op(9).await?;
    assert_eq!(invalid["d"], false);

    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::IdentifyTooFast);
    assert_eq!(
        (violations[0].shard, violations[0].num_shards),
        (Some(2), Some(4))
    );

    let log: Vec<IdentifyRecord> = fixture::get(&fake, "identifies").await;
    let outcomes: Vec<(u32, u32, IdentifyOutcome)> =
        log.iter().map(|r| (r.shard, r.bucket, r.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (0, 0, IdentifyOutcome::Accepted),
            (1, 1, IdentifyOutcome::Accepted),
            (2, 0, IdentifyOutcome::InvalidSession)
        ]
    );
    assert!(log[0].session_id.is_some() && log[2].session_id.is_none());
    // The budget paid for the two accepted Identifies only.
    let budget: fake_discord::control::BudgetInfo = fixture::get(&fake, "budget").await;
    assert_eq!(budget.remaining, 998);
    Ok(())
}

#[tokio::test]
async fn identifies_spaced_by_the_window_pass() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        identify_window_ms: 300,
        ..fixture::config()
    })
    .await;
    let (_a, _) = Client::start(&fake.gateway_url(), TOKEN, [0, 2]).await?;
    tokio::time::sleep(Duration::from_millis(320)).await;
    let (_b, _) = Client::start(&fake.gateway_url(), TOKEN, [1, 2]).await?;
    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations, vec![]);
    let log: Vec<IdentifyRecord> = fixture::get(&fake, "identifies").await;
    assert_eq!(log.len(), 2);
    assert!(log[1].at_us - log[0].at_us >= 300_000);
    Ok(())
}

/// Two Identifies of one bucket `gap` apart, both arriving while the fake's only thread is
/// stalled (as on a loaded host): the fake judges them together once it runs again, and must
/// time each at its arrival. Returns each one's answer (its op; they are judged in no set
/// order) and the fake's reports.
async fn identifies_while_stalled(
    gap: Duration,
) -> anyhow::Result<([u64; 2], Vec<Violation>, Vec<IdentifyRecord>, Counters)> {
    let stallable = fixture::Stallable::spawn(fake_discord::Config {
        identify_window_ms: 500,
        ..fixture::config()
    });
    let fake = stallable.fake();
    let mut a = Client::connect(&fake.gateway_url(), true).await?;
    a.expect_op(10).await?;
    let mut b = Client::connect(&fake.gateway_url(), true).await?;
    b.expect_op(10).await?;
    let stall = stallable.stall().await;
    a.identify(TOKEN, [0, 2], INTENTS).await?;
    // The distance under test between the two sends (not a synchronisation).
    tokio::time::sleep(gap).await;
    b.identify(TOKEN, [1, 2], INTENTS).await?;
    // Both are in the fake's socket buffers; a moment later the fake runs again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stall);
    let mut ops = [0; 2];
    for (op, client) in ops.iter_mut().zip([&mut a, &mut b]) {
        *op = client.payload().await?["op"].as_u64().unwrap_or(u64::MAX);
    }
    let violations = fixture::get(fake, "violations").await;
    let log = fixture::get(fake, "identifies").await;
    let counters = fixture::get(fake, "counters").await;
    Ok((ops, violations, log, counters))
}

#[tokio::test]
async fn a_stalled_fake_times_identifies_at_arrival_not_when_it_reads_them() -> anyhow::Result<()> {
    // 600 ms apart against a 500 ms window: fine, although the fake reads both at once.
    let (ops, violations, log, counters) =
        identifies_while_stalled(Duration::from_millis(600)).await?;
    assert_eq!(violations, vec![]);
    assert_eq!(ops, [0, 0], "both READY");
    assert_eq!(log.len(), 2);
    let gap = log[1].at_us.abs_diff(log[0].at_us);
    assert!(
        (590_000..2_000_000).contains(&gap),
        "arrivals {gap} µs apart"
    );
    // The fake saw its own lag: the first one waited the gap and the stall after it.
    let first = log.iter().find(|r| r.shard == 0).expect("shard 0 logged");
    assert!(first.lag_us >= 700_000, "{first:?}");
    assert!(counters.identify_lag_max_us >= first.lag_us);
    Ok(())
}

#[tokio::test]
async fn a_stalled_fake_still_catches_identifies_that_arrived_too_close() -> anyhow::Result<()> {
    // 300 ms apart against a 500 ms window: too fast, however late the fake reads them.
    let (mut ops, violations, log, _) =
        identifies_while_stalled(Duration::from_millis(300)).await?;
    ops.sort_unstable();
    assert_eq!(ops, [0, 9], "one READY, one op 9 Invalid Session");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::IdentifyTooFast);
    let gap = log[1].at_us.abs_diff(log[0].at_us);
    assert!((290_000..500_000).contains(&gap), "arrivals {gap} µs apart");
    Ok(())
}

async fn closes_with(
    config: fake_discord::Config,
    identify: serde_json::Value,
) -> anyhow::Result<(Option<u16>, Vec<Violation>)> {
    let fake = fixture::spawn(config).await;
    let mut client = Client::connect(&fake.gateway_url(), true).await?;
    client.expect_op(10).await?;
    client.send(json!({"op": 2, "d": identify})).await?;
    let code = client.closed().await?;
    Ok((code, fixture::get(&fake, "violations").await))
}

fn identify_d(shard: [u64; 2], intents: u64) -> serde_json::Value {
    json!({"token": TOKEN, "properties": {"os": "linux", "browser": "t", "device": "t"},
           "shard": shard, "intents": intents})
}

#[tokio::test]
async fn identify_validation_closes_with_discords_codes() -> anyhow::Result<()> {
    let cases = [
        (
            fixture::config(),
            json!({"token": "wrong", "properties": {}, "intents": 1}),
            4004,
            Rule::AuthenticationFailed,
        ),
        (
            fixture::config(),
            identify_d([2, 2], 1),
            4010,
            Rule::InvalidShard,
        ),
        (
            fixture::config(),
            identify_d([0, 1], 1 << 30),
            4013,
            Rule::InvalidIntents,
        ),
        (
            fake_discord::Config {
                privileged_intents: 0,
                ..fixture::config()
            },
            identify_d([0, 1], 1 << 15),
            4014,
            Rule::DisallowedIntents,
        ),
        (
            fake_discord::Config {
                guilds: 6_000,
                ..fixture::config()
            },
            identify_d([0, 2], 1),
            4011,
            Rule::ShardingRequired,
        ),
        (
            fixture::config(),
            json!({"token": TOKEN, "properties": {}, "intents": 1, "large_threshold": 10}),
            4001,
            Rule::InvalidPayload,
        ),
        (
            fixture::config(),
            json!({"token": TOKEN, "properties": {}}),
            4002,
            Rule::DecodeError,
        ),
    ];
    for (config, identify, code, rule) in cases {
        let (closed, violations) = closes_with(config, identify.clone()).await?;
        assert_eq!(closed, Some(code), "{identify}");
        assert_eq!(violations.len(), 1, "{identify}: {violations:?}");
        assert_eq!(violations[0].rule, rule, "{identify}");
    }
    Ok(())
}

#[tokio::test]
async fn an_exhausted_budget_terminates_every_session_and_resets_the_token() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        session_start_limit: 2,
        identify_window_ms: 0,
        ..fixture::config()
    })
    .await;
    let (mut a, _) = Client::start(&fake.gateway_url(), TOKEN, [0, 2]).await?;
    let (mut b, _) = Client::start(&fake.gateway_url(), TOKEN, [1, 2]).await?;
    let mut c = Client::connect(&fake.gateway_url(), true).await?;
    c.expect_op(10).await?;
    c.identify(TOKEN, [0, 2], INTENTS).await?;
    assert_eq!(c.closed().await?, Some(4004));
    assert_eq!(a.closed().await?, Some(4004));
    assert_eq!(b.closed().await?, Some(4004));

    let violations: Vec<Violation> = fixture::get(&fake, "violations").await;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::BudgetExhausted);
    let sessions: Vec<fake_discord::control::SessionInfo> = fixture::get(&fake, "sessions").await;
    assert!(sessions.is_empty());

    // The token is reset: REST and the gateway refuse it.
    let http = fixture::http();
    let bot = http
        .get(format!("{}/v10/gateway/bot", fake.api_url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await?;
    assert_eq!(bot.status(), 401);
    let mut d = Client::connect(&fake.gateway_url(), true).await?;
    d.expect_op(10).await?;
    d.identify(TOKEN, [0, 1], INTENTS).await?;
    assert_eq!(d.closed().await?, Some(4004));

    // A reset brings everything back.
    let reset = http
        .post(format!("{}/reset", fake.control_url()))
        .send()
        .await?;
    assert!(reset.status().is_success());
    let budget: fake_discord::control::BudgetInfo = fixture::get(&fake, "budget").await;
    assert_eq!(budget.remaining, 2);
    Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    Ok(())
}

#[tokio::test]
async fn the_budget_refills_after_its_period_and_can_be_set() -> anyhow::Result<()> {
    let fake = fixture::spawn(fake_discord::Config {
        session_start_limit: 5,
        // Long enough that a loaded machine still reads the budget before it refills (400 ms
        // was not: the first read sometimes saw the refill); the wait below is what is left.
        budget_reset_ms: 2_000,
        identify_window_ms: 0,
        ..fixture::config()
    })
    .await;
    Client::start(&fake.gateway_url(), TOKEN, [0, 1]).await?;
    let budget: fake_discord::control::BudgetInfo = fixture::get(&fake, "budget").await;
    assert_eq!(budget.remaining, 4);
    assert!(budget.reset_after <= 2_000);
    tokio::time::sleep(Duration::from_millis(budget.reset_after + 50)).await;
    let budget: fake_discord::control::BudgetInfo = fixture::get(&fake, "budget").await;
    assert_eq!(budget.remaining, 5);
    let budget: fake_discord::control::BudgetInfo =
        fixture::post(&fake, "budget", json!({"remaining": 1})).await;
    assert_eq!(budget.remaining, 1);
    Ok(())
}
