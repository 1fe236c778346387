//! Scenario: the token is missing, then wrong, then right, on the real cluster with the fake
//! Discord as the REST base.
//!
//! 1. No Secret → `TokenSecretMissing` naming the Secret and namespace, and zero pods while the
//!    operator keeps reconciling.
//! 2. The Secret without the key → `TokenSecretMissing` naming the key; zero pods.
//! 3. A wrong token → Discord answers 401 → `InvalidToken` (and a Warning Event); zero pods.
//! 4. The right token → pods, Ready, `Degraded=False` and a `Recovered` Event.
//! 5. New intents → the bot's fatal markers in Redis are deleted (`FatalMarkersCleared` Event).
//!
//! The token never appears in the operator's log, the Events or the ShardSet.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::json;
use shardset_e2e::TestNamespace;
use shardset_e2e::host::{Operator, Stage, TOKEN, fake_application_id};
use shardset_e2e::secrets::{TOKEN_SECRET, put_secret, put_token};
use shardset_e2e::shardsets::{
    condition, exactly_ready, has_condition, pods_of, wait_pods, wait_shardset,
};
use shardset_e2e::waits::{Look, poll};

const WRONG: &str = "e2e.wrong.token-0c1d2e";

async fn no_pods_after_reconciles(ns: &TestNamespace, op: &Operator) -> anyhow::Result<()> {
    let since = op.metrics().await?.reconciles();
    op.wait_reconciles(since, 2.0, Duration::from_secs(60))
        .await?;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&pods_of("bot")))
        .await?;
    assert!(
        pods.items.is_empty(),
        "no pods may be created without a usable token"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_then_wrong_then_right_token() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-secrets").await else {
        return Ok(());
    };
    let stage = Stage::new(100).await?;
    let operator = Operator::start(&ns, "op-a", &[])?;
    stage.shardset("bot").shards(3).apply(&ns)?;

    // 1. No Secret at all.
    let expected = format!(
        "Secret \"bot-token\" not found in namespace \"{}\"",
        ns.name
    );
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        has_condition(s, "Ready", "False", "TokenSecretMissing")
    })
    .await?;
    let message = condition(&ss, "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains(&expected), "{message}");
    no_pods_after_reconciles(&ns, &operator).await?;

    // 2. The Secret, but not the key.
    put_secret(&ns, TOKEN_SECRET, &[("other", "x")]).await?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        condition(s, "Degraded").is_some_and(|c| c.message.contains("has no key \"token\""))
    })
    .await?;
    assert!(has_condition(&ss, "Degraded", "True", "TokenSecretMissing"));
    no_pods_after_reconciles(&ns, &operator).await?;

    // 3. A token Discord refuses.
    put_token(&ns, TOKEN_SECRET, WRONG).await?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        has_condition(s, "Degraded", "True", "InvalidToken")
    })
    .await?;
    assert!(has_condition(&ss, "Ready", "False", "InvalidToken"));
    let message = condition(&ss, "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("401") && message.contains("bot-token"),
        "{message}"
    );
    no_pods_after_reconciles(&ns, &operator).await?;
    let metrics = operator.metrics().await?;
    let refused = metrics.get(
        "shardset_operator_discord_requests_total{endpoint=\"users/@me\",result=\"unauthorized\"}",
    );
    assert!(
        (1.0..=2.0).contains(&refused),
        "one 401 per token, not a retry loop: {refused}"
    );

    // 4. The right token.
    put_token(&ns, TOKEN_SECRET, TOKEN).await?;
    wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &["bot-3-0-0", "bot-3-1-1", "bot-3-2-2"])
    })
    .await?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        has_condition(s, "Ready", "True", "AllShardsReady")
            && has_condition(s, "Degraded", "False", "AsExpected")
    })
    .await?;

    let events = ns.events_yaml();
    for reason in [
        "TokenSecretMissing",
        "InvalidToken",
        "Recovered",
        "PodsCreated",
    ] {
        assert!(events.contains(reason), "no {reason} Event in {events}");
    }
    let shardset_yaml = ns.kubectl(&["get", "shardset", "bot", "-o", "yaml"])?;
    for secret in [TOKEN, WRONG] {
        assert!(
            !operator.log().contains(secret),
            "token in the operator log"
        );
        assert!(!events.contains(secret), "token in an Event");
        assert!(!shardset_yaml.contains(secret), "token in the ShardSet");
    }
    assert_eq!(ss.status.map(|s| s.pods), Some(3));

    // 5. New intents: the shards Discord closed for good (fatal markers, written by workers on
    //    4004/4010-4014) may try again, so the operator deletes the bot's markers.
    let keys = shardset_contract::Keys::new(fake_application_id());
    let mut conn = stage.redis.conn();
    let _: () = redis::Commands::set(&mut conn, keys.fatal(3, 1), "disallowed intents (4014)")?;
    ns.merge_patch("shardset/bot", json!({"spec": {"intents": 513}}))?;
    // Redis has no watch: poll the marker until it is gone.
    poll(
        "the fatal marker deleted after the intents change",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let there = redis::Commands::exists::<_, bool>(&mut conn, keys.fatal(3, 1));
            async move {
                Ok(if there? {
                    Look::NotYet("the marker is still there".into())
                } else {
                    Look::Done(())
                })
            }
        },
    )
    .await?;
    let events = ns.events_yaml();
    assert!(
        events.contains("FatalMarkersCleared") && events.contains("1 shards closed for good"),
        "{events}"
    );
    stage.shutdown().await;
    Ok(())
}
