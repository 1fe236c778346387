//! End to end: a ShardSet whose Secret holds a token Discord refuses.
//!
//! With the charts installed as a user would, a ShardSet pointing at a wrong token:
//! 1. gets `Ready=False`/`Degraded=True` with reason `InvalidToken`, a message naming the Secret
//!    (never the token) and a Warning Event;
//! 2. never has a pod (so nothing can crash-loop), the fake sees no gateway connection and no
//!    Identify (the budget allows at most one attempt; none is spent), and however often the
//!    operator reconciles, it asked Discord about that token once;
//! 3. once the right token is put into the same Secret, the ShardSet becomes Ready by itself with
//!    one Identify per shard and zero violations;
//! 4. neither token appears in any log, Event, status or `kubectl get -o yaml`, and the operator's
//!    log has no `forbidden`.
//!
//! The chart's Redis serves TLS only here (`redis.tls.enabled`, its CA made by the chart): the
//! operator and the workers reach it over `rediss://`, trusting `spec.redis.tls.caSecretRef`.

use std::time::{Duration, Instant};

use anyhow::ensure;
use shardset_e2e::charts::Stack;
use shardset_e2e::metrics::Metrics;
use shardset_e2e::recorders::PodLog;
use shardset_e2e::secrets::{fresh_token, put_token};
use shardset_e2e::shardsets::{condition, has_condition, settled_at, wait_shardset};
use shardset_e2e::{TestNamespace, report};

/// How long the operator may take for the reconciles a change triggers.
const RECONCILES_WITHIN: Duration = Duration::from_secs(120);

/// Calls the operator made to Discord's `/users/@me` that were not answered 200.
fn refused_calls(metrics: &Metrics) -> f64 {
    metrics.sum_where(|k| {
        k.starts_with("shardset_operator_discord_requests_total{")
            && k.contains("users/@me")
            && !k.contains("result=\"ok\"")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_is_a_condition_and_costs_nothing() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("e2e-badtoken").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install_with_redis_tls(&ns).await?;
    let wrong = format!("{}x", fresh_token());
    stack.sweep_for(&wrong);
    put_token(&ns, "wrong-token", &wrong).await?;

    // Every pod the ShardSet ever gets, as the watch reports it.
    let pods = PodLog::of_shardset(&ns, "bot");

    // 1. The condition, with a message that names the Secret.
    stack
        .shardset("bot", 4, 2)
        .token_secret("wrong-token")
        .apply(&ns)?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(120), |s| {
        has_condition(s, "Degraded", "True", "InvalidToken")
            && has_condition(s, "Ready", "False", "InvalidToken")
    })
    .await?;
    stack.remember("ShardSet", &ss);
    let message = condition(&ss, "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("Secret \"wrong-token\" key \"token\"") && message.contains("401"),
        "the condition should name the Secret and the 401: {message}"
    );
    report!(
        "InvalidToken {:.1} s after install: {message}",
        started.elapsed().as_secs_f64()
    );
    let events = ns.kubectl(&["get", "events", "--field-selector", "reason=InvalidToken"])?;
    ensure!(
        events.contains("Warning") && events.contains("shardset/bot"),
        "no InvalidToken Warning Event: {events}"
    );

    // 2. Reconciles keep coming (changes to the ShardSet trigger them at once); none creates a
    //    pod or asks Discord again about the same token.
    let base = stack.leader_metrics().await?.reconciles();
    for poke in 1..=3 {
        ns.kubectl(&[
            "annotate",
            "--overwrite",
            "shardset/bot",
            &format!("e2e.shardset.io/poke={poke}"),
        ])?;
        stack
            .wait_leader_reconciles(base + f64::from(poke), RECONCILES_WITHIN)
            .await?;
    }
    let after = stack.leader_metrics().await?;
    ensure!(
        refused_calls(&after) == 1.0,
        "the operator should ask Discord about a refused token once, metrics say {}: {:?}",
        refused_calls(&after),
        after.series_where(|k| k.contains("discord_requests"))
    );
    let seen = pods.seen();
    ensure!(
        seen.is_empty(),
        "pods were created for a refused token: {seen:?}"
    );
    let identifies = stack.fake.identifies().await?;
    let counters = stack.fake.counters().await?;
    ensure!(
        identifies.is_empty() && counters.connections_total == 0,
        "the refused token reached the gateway: {identifies:#?} {counters:#?}"
    );

    // 3. The right token in the same Secret: Ready without touching the ShardSet.
    let step = Instant::now();
    put_token(&ns, "wrong-token", &stack.token).await?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(180), |s| settled_at(s, 4)).await?;
    stack.remember("ShardSet", &ss);
    stack
        .fake
        .wait_layout_live(4, Duration::from_secs(60))
        .await?;
    report!(
        "token fixed in the Secret: Ready {:.1} s later",
        step.elapsed().as_secs_f64()
    );
    ensure!(
        stack.fake.identifies().await?.len() == 4,
        "expected one Identify per shard once the token is right"
    );
    stack
        .fake
        .assert_no_violations("after the token was fixed")
        .await?;
    drop(pods);

    // 4. Neither token anywhere; no RBAC refusal.
    stack.snapshot("end")?;
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
