//! Scenario: deleting a ShardSet, through its finalizer.
//!
//! 1. With Redis reachable: the pods go, every key of the bot (`shardset:{<app_id>}:*`) is
//!    deleted and another bot's keys are not, the ShardSet is gone, and a `RedisKeysDeleted`
//!    Event says so.
//! 2. With a password-protected Redis whose password Secret is deleted first (as deleting the
//!    namespace does): the password last read still reaches Redis, and the keys go.
//! 3. With Redis unreachable: deletion is not blocked forever: after the give-up period the
//!    finalizer is removed anyway, with a `CleanupSkipped` Warning.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use redis::Commands;
use redis_test_server::{Options, RedisServer};
use shardset_contract::Keys;
use shardset_e2e::host::{Operator, Stage, fake_application_id};
use shardset_e2e::secrets::put_secret;
use shardset_e2e::shardsets::{ShardSet, exactly_ready, pods_of, wait_pods, wait_shardset};
use shardset_e2e::{TestNamespace, delete_and_wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_cleans_redis_and_never_hangs() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-cleanup").await else {
        return Ok(());
    };
    let stage = Stage::with_token(&ns, 100).await?;
    let _operator = Operator::start(&ns, "op-a", &["--cleanup-give-up-seconds", "10"])?;

    // 1. Reachable Redis.
    stage.shardset("bot").shards(2).apply(&ns)?;
    wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &["bot-2-0-0", "bot-2-1-1"])
    })
    .await?;
    wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.application_id.is_some())
    })
    .await?;
    let ours = Keys::new(fake_application_id());
    let theirs = Keys::new(42);
    let mut conn = stage.redis.conn();
    for key in [
        ours.epoch(),
        ours.gate(0),
        ours.session(2, 1),
        ours.lease(2, 1),
        ours.status(2, 0),
        ours.queue(0),
        ours.active_layout(),
        theirs.session(2, 1),
    ] {
        let _: () = conn.set(&key, "x")?;
    }
    let shardsets = ns.api::<ShardSet>();
    delete_and_wait(&shardsets, "bot", Duration::from_secs(90)).await?;
    let left = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&pods_of("bot")))
        .await?;
    assert!(left.items.is_empty(), "pods left: {}", left.items.len());
    let keys: Vec<String> = conn.keys("shardset:{*")?;
    assert_eq!(
        keys,
        vec![theirs.session(2, 1)],
        "only the other bot's keys remain"
    );
    assert!(ns.events_yaml().contains("RedisKeysDeleted"));

    // 2. The password's Secret deleted before the ShardSet.
    let password = "cleanup-pw-5d1e";
    let guarded = RedisServer::start_with(Options {
        args: vec!["--requirepass".into(), password.into()],
        ..Options::default()
    });
    put_secret(&ns, "redis-auth", &[("password", password)]).await?;
    stage
        .shardset("guarded")
        .redis_url(&guarded.url())
        .redis_secret("redis-auth")
        .shards(1)
        .apply(&ns)?;
    wait_shardset(&ns, "guarded", Duration::from_secs(60), |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.application_id.is_some())
    })
    .await?;
    let mut authed =
        redis::Client::open(format!("redis://:{password}@127.0.0.1:{}/", guarded.port))?
            .get_connection()?;
    for key in [ours.epoch(), ours.session(1, 0), ours.status(1, 0)] {
        let _: () = authed.set(&key, "x")?;
    }
    delete_and_wait(&ns.api::<Secret>(), "redis-auth", Duration::from_secs(30)).await?;
    delete_and_wait(&shardsets, "guarded", Duration::from_secs(90)).await?;
    let keys: Vec<String> = authed.keys("shardset:{*")?;
    assert!(keys.is_empty(), "keys left behind: {keys:?}");
    assert!(
        !ns.events_yaml().contains("CleanupSkipped"),
        "cleanup gave up instead of using the password last read"
    );

    // 3. Unreachable Redis: deletion completes after the give-up period.
    let closed = format!("redis://127.0.0.1:{}/", redis_test_server::free_port());
    stage
        .shardset("lost")
        .redis_url(&closed)
        .shards(1)
        .apply(&ns)?;
    wait_shardset(&ns, "lost", Duration::from_secs(60), |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.application_id.is_some())
            && s.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
    })
    .await?;
    let started = std::time::Instant::now();
    delete_and_wait(&shardsets, "lost", Duration::from_secs(120)).await?;
    println!(
        "deletion with Redis unreachable took {:?}",
        started.elapsed()
    );
    assert!(ns.events_yaml().contains("CleanupSkipped"));
    stage.shutdown().await;
    Ok(())
}
