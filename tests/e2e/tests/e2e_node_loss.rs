//! End to end: the kind node running worker pods is lost (`docker stop` of its container).
//!
//! The operator, its Redis and the fake Discord run on the control plane (chart values), the 8
//! shards at 2 per pod on the two workers. Stopping the worker with the most shard pods:
//! 1. the node goes NotReady; after the worker pods' 30 s node-loss toleration Kubernetes evicts
//!    them, but their kubelet never confirms, so they would stay `Terminating` — the operator
//!    force-deletes them (Warning Event `PodForceDeleted`) and recreates them on the other worker;
//! 2. every shard is READY again in the fake, on the other node, with zero violations, and the
//!    moved shards **resumed** their sessions (the old pods saved them, or their checkpoints were
//!    at most 2 s old, and each lease had expired): no new Identify;
//! 3. the node is started again and is Ready, with pod networking back (a DNS lookup from a pod on
//!    it), so later tests find the cluster whole;
//! 4. the usual sweep: no token anywhere, no `forbidden`.
//!
//! This file runs alone in its test binary: stopping a node would disturb scenarios running beside
//! it. The cluster's own node-loss test (`cluster_node_loss`) runs in another binary, never at the
//! same time.

mod e2e_support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use e2e_support::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, ResourceExt};
use shardset_e2e::shardsets::{exactly_ready, settled_at, wait_pods, wait_shardset};
use shardset_e2e::{TestNamespace, conditions, docker};

const PODS: [&str; 4] = ["bot-8-0-1", "bot-8-2-3", "bot-8-4-5", "bot-8-6-7"];

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e_node_loss: {line}");
}

/// Starts the node's container again when dropped, also when the test fails half-way.
struct RestartNode(String);
impl Drop for RestartNode {
    fn drop(&mut self) {
        let _ = docker(&["start", &self.0]);
    }
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_a_lost_node_come_back_elsewhere() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("e2e-nodeloss").await else {
        return Ok(());
    };
    let (_, workers) = ns.nodes().await?;
    ensure!(workers.len() >= 2, "needs two workers, found {workers:?}");
    let stack = Stack::install(&ns, Placement::ControlPlane).await?;

    // Spread the shard pods over both workers (preferred, as a user would).
    let spread = "    affinity:
      podAntiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels: {shardset.io/shardset: bot}
";
    ns.apply(&stack.shardset_yaml("bot", 8, 2, spread))?;
    wait_shardset(&ns, "bot", Duration::from_secs(180), |s| settled_at(s, 8)).await?;
    let pods = wait_pods(&ns, "bot", Duration::from_secs(60), |p| {
        exactly_ready(p, &PODS)
    })
    .await?;
    stack
        .fake
        .wait_layout_live(8, Duration::from_secs(60))
        .await?;
    stack.snapshot("before the node loss")?;

    // The worker holding the most shard pods goes.
    let lost = workers
        .iter()
        .max_by_key(|w| pods.iter().filter(|p| node_of(p) == w.as_str()).count())
        .cloned()
        .context("a worker")?;
    let other: Vec<&String> = workers.iter().filter(|w| **w != lost).collect();
    let moved_pods: BTreeSet<String> = pods
        .iter()
        .filter(|p| node_of(p) == lost)
        .map(ResourceExt::name_any)
        .collect();
    let moved_shards: BTreeSet<u32> = moved_pods
        .iter()
        .flat_map(|name| {
            let mut parts = name.rsplitn(3, '-');
            let last: u32 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            let first: u32 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            first..=last
        })
        .collect();
    let before_identifies = stack.fake.identifies().await?;
    let before_sessions = live_sessions(&stack.fake.sessions().await?, 8);

    let nodes: Api<Node> = Api::all(ns.client.clone());
    let _restart = RestartNode(lost.clone());
    let started = Instant::now();
    docker(&["stop", &lost])?;
    report(&format!(
        "stopped {lost} holding {moved_pods:?} (shards {moved_shards:?})"
    ));

    // 1. NotReady, then the pods come back Ready on the other worker.
    shardset_e2e::wait_for(
        &nodes,
        &lost,
        |n: Option<&Node>| !conditions::node_ready_is("True")(n),
        Duration::from_secs(180),
    )
    .await?;
    report(&format!(
        "{lost} NotReady after {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let lost_name = lost.clone();
    wait_pods(&ns, "bot", Duration::from_secs(300), move |pods| {
        exactly_ready(pods, &PODS) && pods.iter().all(|p| node_of(p) != lost_name)
    })
    .await?;
    report(&format!(
        "all 4 pods Ready on {other:?} {:.0} s after docker stop",
        started.elapsed().as_secs_f64()
    ));
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(120), |s| settled_at(s, 8)).await?;
    stack.remember("ShardSet", &ss);

    // 2. Every shard live again, zero violations, the moved ones resumed.
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
    for shard in &moved_shards {
        let new = after_sessions
            .iter()
            .find(|s| s.shard == *shard)
            .context("live session")?;
        let old = &before_sessions[shard];
        ensure!(
            new.session_id == old.session_id && new.resumes > old.resumes,
            "shard {shard} was not resumed: before {old:#?}, after {new:#?}"
        );
    }
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
    report(&format!(
        "shards {moved_shards:?} resumed on the other worker, no Identify, no violation; {:.0} s in all",
        started.elapsed().as_secs_f64()
    ));
    stack.snapshot("after the node loss")?;

    // 3. The node comes back whole.
    docker(&["start", &lost])?;
    shardset_e2e::wait_for(
        &nodes,
        &lost,
        conditions::node_ready_is("True"),
        Duration::from_secs(180),
    )
    .await?;
    let resolved = ns
        .run_probe(
            "dns-on-returned-node",
            &[
                "dns",
                "kubernetes.default.svc.cluster.local",
                "--wait",
                "90",
            ],
            Some(&lost),
        )
        .await?;
    ensure!(
        resolved["addresses"].as_array().map(Vec::len) == Some(1),
        "DNS from the returned node: {resolved}"
    );
    report(&format!(
        "{lost} Ready again with networking {:.0} s after docker stop",
        started.elapsed().as_secs_f64()
    ));

    // 4. The sweep.
    stack.finish().await?;
    Ok(())
}
