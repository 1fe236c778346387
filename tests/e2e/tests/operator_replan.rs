//! Scenario: changing a running ShardSet the ways a user does, on the real cluster.
//!
//! 1. 10 shards at 3 per pod → 4 pods Ready.
//! 2. `kubectl edit` of `spec.shards` to 12 → the 12-shard layout starts beside the old one
//!    (BlueGreen) and then the old layout's pods go: exactly bot-12-* remain.
//! 3. `kubectl scale --replicas=6` → exactly the 6-shard layout.
//! 4. `reshardStrategy: Recreate`, scale to 4 → the old layout goes first, then the new one runs.
//! 5. A pod template change (an extra label) → pods replaced one at a time (never two terminating
//!    at once), all carrying the label in the end.
//! 6. `shardsPerPod` 2 → 1 on the same total → repacked to one pod per shard.

use std::time::Duration;

use kube::ResourceExt;
use serde_json::json;
use shardset_e2e::TestNamespace;
use shardset_e2e::host::{Operator, Stage, WorkerStandIn};
use shardset_e2e::shardsets::{
    exactly_ready, has_condition, max_terminating_while, names, wait_pods, wait_shardset,
};

const LONG: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_scale_replan_the_pods() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-replan").await else {
        return Ok(());
    };
    let stage = Stage::with_token(&ns, 100).await?;
    // The probe pods do not speak Redis: this stands in for the workers' acknowledgements of
    // each reshard step.
    let _workers = WorkerStandIn::start(&ns, &stage.redis).await?;
    let _operator = Operator::start(&ns, "op-a", &[])?;

    // 1.
    // W = 1 s: the hand-overs of steps 2 and 3 wait it three times each.
    stage
        .shardset("bot")
        .shards(10)
        .per_pod(3)
        .handover_window_ms(1000)
        .apply(&ns)?;
    wait_pods(&ns, "bot", LONG, |p| {
        exactly_ready(p, &["bot-10-0-2", "bot-10-3-5", "bot-10-6-8", "bot-10-9-9"])
    })
    .await?;

    // 2. kubectl edit.
    ns.kubectl_edit("shardset/bot", "s/^  shards: 10$/  shards: 12/")?;
    let mut saw_both_layouts = false;
    wait_pods(&ns, "bot", LONG, |p| {
        let n = names(p);
        saw_both_layouts |= n.iter().any(|n| n.starts_with("bot-10-"))
            && n.iter().any(|n| n.starts_with("bot-12-"));
        exactly_ready(
            p,
            &["bot-12-0-2", "bot-12-3-5", "bot-12-6-8", "bot-12-9-11"],
        )
    })
    .await?;
    assert!(
        saw_both_layouts,
        "BlueGreen runs the new layout beside the old one first"
    );
    let ss = wait_shardset(&ns, "bot", LONG, |s| {
        has_condition(s, "Ready", "True", "AllShardsReady")
    })
    .await?;
    let status = ss.status.unwrap_or_default();
    assert_eq!(status.shards, Some(12));
    assert_eq!(
        status.layout.map(|l| (l.current, l.target)),
        Some((Some("12".into()), "12".into()))
    );

    // 3. kubectl scale.
    ns.kubectl(&["scale", "shardset", "bot", "--replicas=6"])?;
    wait_pods(&ns, "bot", LONG, |p| {
        exactly_ready(p, &["bot-6-0-2", "bot-6-3-5"])
    })
    .await?;
    wait_shardset(&ns, "bot", LONG, |s| {
        s.status.as_ref().is_some_and(|st| st.shards == Some(6))
            && has_condition(s, "Ready", "True", "AllShardsReady")
    })
    .await?;

    // 4. Recreate: the old layout is gone before any new pod exists.
    ns.merge_patch(
        "shardset/bot",
        json!({"spec": {"reshardStrategy": "Recreate"}}),
    )?;
    ns.kubectl(&["scale", "shardset", "bot", "--replicas=4"])?;
    let mut overlap = false;
    wait_pods(&ns, "bot", LONG, |p| {
        let n = names(p);
        overlap |=
            n.iter().any(|n| n.starts_with("bot-6-")) && n.iter().any(|n| n.starts_with("bot-4-"));
        exactly_ready(p, &["bot-4-0-2", "bot-4-3-3"])
    })
    .await?;
    assert!(!overlap, "Recreate never runs two layouts at once");

    // 5. A template change rolls pod by pod.
    let stop = wait_pods(&ns, "bot", LONG, |p| {
        exactly_ready(p, &["bot-4-0-2", "bot-4-3-3"])
            && p.iter()
                .all(|p| p.labels().get("team").map(String::as_str) == Some("bots"))
    });
    let (most, done) = max_terminating_while(&ns, "bot", async {
        ns.merge_patch(
            "shardset/bot",
            json!({"spec": {"pod": {"labels": {"team": "bots"}}}}),
        )?;
        stop.await
    })
    .await?;
    done?;
    assert_eq!(most, 1, "exactly one pod replaced at a time");

    // 6. Repacking the same total.
    ns.merge_patch("shardset/bot", json!({"spec": {"shardsPerPod": 1}}))?;
    wait_pods(&ns, "bot", LONG, |p| {
        exactly_ready(p, &["bot-4-0-0", "bot-4-1-1", "bot-4-2-2", "bot-4-3-3"])
    })
    .await?;
    let events = ns.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ShardSet",
    ])?;
    assert!(
        events.contains("PodsCreated") && events.contains("PodsDeleted"),
        "{events}"
    );
    assert!(
        events.contains("PodReplaced"),
        "drift replacements are announced: {events}"
    );
    stage.shutdown().await;
    Ok(())
}
