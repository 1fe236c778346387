//! Scenario: a settled ShardSet causes no writes. Over 30 s of steady state the operator keeps
//! reconciling (every 5 s here, reading the Secret, Redis and the pods) yet:
//! - sends zero write requests to the API server (its own request counter, leases aside);
//! - sends zero LIST requests: each pass reads the pods from the controller's pod store, not
//!   with a LIST (issue 16; the watches that fill the stores are counted apart, as `watch`);
//! - the ShardSet's and every pod's `resourceVersion` stay the same (the API server's view: any
//!   write, by anyone, to those objects would change them);
//! - no Event is added to the namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use shardset_e2e::TestNamespace;
use shardset_e2e::host::{Operator, Stage};
use shardset_e2e::shardsets::{
    ShardSet, exactly_ready, has_condition, pods_of, wait_pods, wait_shardset,
};

const QUIET: Duration = Duration::from_secs(30);

async fn versions(ns: &TestNamespace) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let ss = ns.api::<ShardSet>().get("bot").await?;
    out.insert(
        "shardset/bot".into(),
        ss.resource_version().unwrap_or_default(),
    );
    for pod in ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&pods_of("bot")))
        .await?
    {
        out.insert(
            format!("pod/{}", pod.name_any()),
            pod.resource_version().unwrap_or_default(),
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes_and_no_lists() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-steady").await else {
        return Ok(());
    };
    let stage = Stage::with_token(&ns, 100).await?;
    let operator = Operator::start(&ns, "op-a", &[])?;
    stage.shardset("bot").shards(4).per_pod(2).apply(&ns)?;
    wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &["bot-4-0-1", "bot-4-2-3"])
    })
    .await?;
    wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        has_condition(s, "Ready", "True", "AllShardsReady")
            && has_condition(s, "Progressing", "False", "Stable")
            && has_condition(s, "Degraded", "False", "AsExpected")
    })
    .await?;
    // Let the reconcile that wrote this status and its echo from the watch pass.
    let settled = operator.metrics().await?.reconciles();
    operator
        .wait_reconciles(settled, 2.0, Duration::from_secs(30))
        .await?;

    let before = operator.metrics().await?;
    let versions_before = versions(&ns).await?;
    let events_before = ns
        .kubectl(&["get", "events", "-o", "name"])?
        .lines()
        .count();

    tokio::time::sleep(QUIET).await; // the measured quiet period itself, not a wait for something

    let after = operator.metrics().await?;
    let reconciles = after.reconciles() - before.reconciles();
    let writes = after.writes() - before.writes();
    let lists = after.lists() - before.lists();
    println!(
        "steady state over {QUIET:?}: {reconciles} reconciles, {writes} writes, {lists} LISTs"
    );
    assert!(
        reconciles >= 4.0,
        "the operator kept reconciling ({reconciles})"
    );
    assert_eq!(
        writes,
        0.0,
        "no writes in a steady state; requests: {:?}",
        after.requests()
    );
    assert_eq!(
        lists,
        0.0,
        "no uncached LIST in a steady state; requests: {:?}",
        after.requests()
    );
    assert_eq!(versions(&ns).await?, versions_before, "no object changed");
    let events_after = ns
        .kubectl(&["get", "events", "-o", "name"])?
        .lines()
        .count();
    assert_eq!(events_after, events_before, "no new Event");
    stage.shutdown().await;
    Ok(())
}
