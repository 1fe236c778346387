//! Scenario: `autoShards` takes the shard count from Discord's `GET /gateway/bot` (the fake
//! Discord, 2,500 guilds → 3 recommended shards) and a guilds-per-shard target of 500 → 6 shards;
//! the status records Discord's figures; `kubectl scale` of an auto ShardSet is refused with a
//! message that says why.

use std::time::Duration;

use shardset_e2e::TestNamespace;
use shardset_e2e::host::{Operator, Stage};
use shardset_e2e::shardsets::{exactly_ready, has_condition, wait_pods, wait_shardset};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_shards_follow_discords_recommendation() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-auto").await else {
        return Ok(());
    };
    let stage = Stage::with_token(&ns, 2500).await?;
    let _operator = Operator::start(&ns, "op-a", &[])?;

    stage
        .shardset("bot")
        .spec(serde_json::json!({"autoShards": {"guildsPerShard": 500}}))
        .per_pod(2)
        .apply(&ns)?;
    wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &["bot-6-0-1", "bot-6-2-3", "bot-6-4-5"])
    })
    .await?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        has_condition(s, "Ready", "True", "AllShardsReady")
    })
    .await?;
    let status = ss.status.unwrap_or_default();
    assert_eq!(status.shards, Some(6));
    assert_eq!(status.recommended_shards, Some(3));
    assert_eq!(status.max_concurrency, Some(1));
    let limit = status.session_start_limit.expect("session start limit");
    assert_eq!((limit.total, limit.remaining), (1000, 1000));

    let refused = ns
        .kubectl(&["scale", "shardset", "bot", "--replicas=8"])
        .expect_err("scaling an auto ShardSet is refused");
    assert!(
        format!("{refused:#}").contains("set exactly one of spec.shards"),
        "{refused:#}"
    );
    stage.shutdown().await;
    Ok(())
}
