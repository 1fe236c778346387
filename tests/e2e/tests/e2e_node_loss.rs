//! End to end: a kind node running worker pods is drained, then lost (`docker stop` of its
//! container).
//!
//! The operator, its Redis and the fake Discord run on the control plane (chart values), the 8
//! shards at 2 per pod on the two workers.
//! 1. `kubectl drain` of the worker with the most shard pods: the ShardSet's PodDisruptionBudget
//!    lets one pod go at a time (never more than one of the four unavailable at once, from a watch
//!    of the pods), each is recreated on the other worker and **resumes** its sessions (no new
//!    Identify, zero violations); then the node is uncordoned.
//! 2. Stopping the worker with the most shard pods: the node goes NotReady; after the worker pods'
//!    30 s node-loss toleration Kubernetes evicts them, but their kubelet never confirms, so they
//!    would stay `Terminating` — the operator force-deletes them (Warning Event `PodForceDeleted`)
//!    and recreates them on the other worker;
//! 3. every shard is READY again in the fake, on the other node, with zero violations, and the
//!    moved shards **resumed** their sessions (the old pods saved them, or their checkpoints were
//!    at most 2 s old, and each lease had expired): no new Identify;
//! 4. the node is started again and is Ready, with pod networking back (a DNS lookup from a pod on
//!    it), so later tests find the cluster whole;
//! 5. the usual sweep: no token anywhere, no `forbidden`.
//!
//! This file runs alone in its test binary: draining or stopping a node would disturb scenarios
//! running beside it. The cluster's own node-loss test (`cluster_node_loss`) runs in another
//! binary, never at the same time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;
use shardset_e2e::charts::{Placement, Stack, ensure_resumed, live_sessions};
use shardset_e2e::conditions::node_of;
use shardset_e2e::nodes::{DrainedNode, StoppedNode};
use shardset_e2e::recorders::MostUnavailable;
use shardset_e2e::shardsets::{
    exactly_ready, pod_range, pods_of, settled_at, wait_pods, wait_shardset,
};
use shardset_e2e::{TestNamespace, report};

const PODS: [&str; 4] = ["bot-8-0-1", "bot-8-2-3", "bot-8-4-5", "bot-8-6-7"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_a_lost_node_come_back_elsewhere() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("e2e-nodeloss").await else {
        return Ok(());
    };
    let (_, workers) = ns.nodes().await?;
    ensure!(workers.len() >= 2, "needs two workers, found {workers:?}");
    let stack = Stack::install(&ns, Placement::ControlPlane).await?;

    // Spread the shard pods over both workers (preferred, as a user would).
    let spread = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"shardset.io/shardset": "bot"}},
        },
    }]}});
    stack
        .shardset("bot", 8, 2)
        .pod("affinity", spread)
        .apply(&ns)?;
    let pods = (stack
        .wait_layout("bot", 8, 2, Duration::from_secs(180))
        .await?)
        .pods;
    stack.snapshot("before the drain")?;

    // 1. A drain, one pod at a time, every moved session resumed.
    let drained = busiest(&workers, &pods)?;
    let (drained_pods, drained_shards) = on_node(&pods, &drained);
    let before_identifies = stack.fake.identifies().await?;
    let before_sessions = live_sessions(&stack.fake.sessions().await?, 8);
    let layout: Vec<String> = PODS.iter().map(|p| p.to_string()).collect();
    let unavailable = MostUnavailable::start(&ns, "bot", &layout);
    let started = Instant::now();
    let node = drained.clone();
    let cordoned = tokio::task::spawn_blocking(move || {
        DrainedNode::drain(&node, &pods_of("bot"), Duration::from_secs(240))
    })
    .await??;
    report!(
        "kubectl drain {drained} evicted {drained_pods:?} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let drained_name = drained.clone();
    wait_pods(&ns, "bot", Duration::from_secs(180), move |pods| {
        exactly_ready(pods, &PODS)
            && pods
                .iter()
                .all(|p| node_of(p) != Some(drained_name.as_str()))
    })
    .await?;
    let drained_sessions = stack
        .fake
        .wait_layout_live(8, Duration::from_secs(120))
        .await?;
    stack.fake.assert_no_violations("after the drain").await?;
    let identifies = stack.fake.identifies().await?;
    ensure!(
        identifies.len() == before_identifies.len(),
        "the drained shards identified instead of resuming: {:#?}",
        &identifies[before_identifies.len()..]
    );
    ensure_resumed(
        &before_sessions,
        &drained_sessions,
        drained_shards.iter().copied(),
    )?;
    let most = unavailable.seen();
    ensure!(
        most <= 1,
        "{most} of the 4 pods were unavailable at once during the drain (the budget allows 1)"
    );
    report!(
        "drain: shards {drained_shards:?} resumed on the other worker, at most {most} pod unavailable at once, no Identify; {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    cordoned.uncordon()?;
    let pods = (stack
        .wait_layout("bot", 8, 2, Duration::from_secs(60))
        .await?)
        .pods;
    stack.snapshot("before the node loss")?;

    // 2. The worker holding the most shard pods goes.
    let lost = busiest(&workers, &pods)?;
    let other: Vec<&String> = workers.iter().filter(|w| **w != lost).collect();
    let (moved_pods, moved_shards) = on_node(&pods, &lost);
    let before_identifies = stack.fake.identifies().await?;
    let before_sessions = live_sessions(&stack.fake.sessions().await?, 8);

    let started = Instant::now();
    let stopped = StoppedNode::stop(&ns, &lost)?;
    report!("stopped {lost} holding {moved_pods:?} (shards {moved_shards:?})");

    // NotReady, then the pods come back Ready on the other worker.
    stopped.wait_not_ready().await?;
    report!(
        "{lost} NotReady after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let lost_name = lost.clone();
    wait_pods(&ns, "bot", Duration::from_secs(300), move |pods| {
        exactly_ready(pods, &PODS) && pods.iter().all(|p| node_of(p) != Some(lost_name.as_str()))
    })
    .await?;
    report!(
        "all 4 pods Ready on {other:?} {:.0} s after docker stop",
        started.elapsed().as_secs_f64()
    );
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(120), |s| settled_at(s, 8)).await?;
    stack.remember("ShardSet", &ss);

    // 3. Every shard live again, zero violations, the moved ones resumed.
    let after_sessions = stack
        .fake
        .wait_layout_live(8, Duration::from_secs(120))
        .await?;
    stack
        .fake
        .assert_no_violations("after the node loss")
        .await?;
    let after_identifies = stack.fake.identifies().await?;
    let new_identifies = &after_identifies[before_identifies.len()..];
    ensure!(
        new_identifies.is_empty(),
        "the moved shards identified instead of resuming: {new_identifies:#?}"
    );
    ensure_resumed(
        &before_sessions,
        &after_sessions,
        moved_shards.iter().copied(),
    )?;
    let events = ns.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=PodForceDeleted",
    ])?;
    ensure!(
        events.contains("shardset/bot") && events.contains("force-deleted"),
        "expected a PodForceDeleted Event (was {lost} restarted by someone else meanwhile?): {events}"
    );
    report!(
        "shards {moved_shards:?} resumed on the other worker, no Identify, no violation; {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    stack.snapshot("after the node loss")?;

    // 4. The node comes back whole.
    stopped.start_whole(&ns).await?;
    report!(
        "{lost} Ready again with networking {:.0} s after docker stop",
        started.elapsed().as_secs_f64()
    );

    // 5. The sweep.
    stack.finish().await?;
    Ok(())
}

/// The worker holding the most of `pods`.
fn busiest(workers: &[String], pods: &[Pod]) -> anyhow::Result<String> {
    workers
        .iter()
        .max_by_key(|w| {
            pods.iter()
                .filter(|p| node_of(p) == Some(w.as_str()))
                .count()
        })
        .cloned()
        .context("a worker")
}

/// The names of the `pods` on `node`, and the shards they run.
fn on_node(pods: &[Pod], node: &str) -> (BTreeSet<String>, BTreeSet<u32>) {
    let names: BTreeSet<String> = pods
        .iter()
        .filter(|p| node_of(p) == Some(node))
        .map(ResourceExt::name_any)
        .collect();
    let shards = names
        .iter()
        .filter_map(|name| pod_range(name))
        .flat_map(|(_, first, last)| first..=last)
        .collect();
    (names, shards)
}
