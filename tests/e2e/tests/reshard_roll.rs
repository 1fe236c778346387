//! Same shard total, new pods, on kind (issue 8):
//!
//! 1. **A new image rolled across all pods** under a steady synthetic message load: the operator
//!    replaces the pods one at a time, each replacement resumes the saved sessions, so the fake
//!    records **no new Identify**, every shard keeps its session id (one more resume each), and
//!    every message of the run got exactly one reply (nothing lost, nothing doubled).
//! 2. **Scaling past the session start budget is refused**: with 5 session starts left,
//!    `kubectl scale` to 16 shards leaves `Resharding=False, reason=InsufficientSessionStarts`
//!    (and a Warning Event) and **no pod of the new layout is ever created**; scaling back to 8
//!    clears it, with the running pods untouched.
//!
//! The image is the worker image under a second tag (`ctr images tag` on every node), which is
//! all a new image is to Kubernetes: another reference in the pod template.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;
use shardset_e2e::charts::{Placement, Stack, WORKER_IMAGE, ensure_resumed, live_sessions};
use shardset_e2e::recorders::PodLog;
use shardset_e2e::shardsets::{
    condition, exactly_ready, has_condition, layout_pods, settled_at, uids, wait_pods,
    wait_shardset,
};
use shardset_e2e::{TestNamespace, report};

const READY_WITHIN: Duration = Duration::from_secs(240);
const ROLLED_IMAGE: &str = "shardset/shard-worker:e2e-roll";
/// Session starts the fake has left once layout 8 runs.
const LEFT: u32 = 5;

fn image_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.containers.first()?.image.as_deref()
}

/// Tags the worker image as [`ROLLED_IMAGE`] in every node's containerd (`make images` loaded
/// the `:dev` tag there).
async fn tag_rolled_image(ns: &TestNamespace) -> anyhow::Result<()> {
    let (cp, workers) = ns.nodes().await?;
    for node in cp.iter().chain(&workers) {
        shardset_e2e::docker(&[
            "exec",
            node,
            "ctr",
            "-n",
            "k8s.io",
            "images",
            "tag",
            "--force",
            &format!("docker.io/{WORKER_IMAGE}"),
            &format!("docker.io/{ROLLED_IMAGE}"),
        ])
        .with_context(|| format!("tag the worker image on node {node}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_image_resumes_every_session_and_the_budget_refuses_a_reshard() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("reshard-roll").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    tag_rolled_image(&ns).await?;
    // Just enough session starts for layout 8, and LEFT more.
    stack.fake.set_budget(8 + LEFT).await?;
    let bot = stack.shardset("bot", 8, 2).replying();
    let first = stack.serve(&bot, READY_WITHIN).await?;
    let layout = layout_pods("bot", 8, 2);
    let want: Vec<&str> = layout.iter().map(String::as_str).collect();
    let before = live_sessions(&first.sessions, 8);

    // 1. The roll, under load.
    let since = stack.start_load().await?;
    let identifies_before = stack.fake.identifies().await?.len();
    let old_uids = uids(&first.pods);
    let step = Instant::now();
    ns.merge_patch("shardset/bot", json!({"spec": {"image": ROLLED_IMAGE}}))?;
    let rolled = wait_pods(&ns, "bot", READY_WITHIN, |pods| {
        exactly_ready(pods, &want)
            && pods.iter().all(|p| {
                image_of(p) == Some(ROLLED_IMAGE)
                    && p.uid().as_deref() != old_uids.get(&p.name_any()).map(String::as_str)
            })
    })
    .await?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| settled_at(s, 8)).await?;
    let after = stack.fake.wait_layout_live(8, READY_WITHIN).await?;
    let took = step.elapsed();
    // A second of load answered by the rolled pods, then stop.
    let left_of_step = READY_WITHIN.saturating_sub(step.elapsed());
    let until = stack
        .stop_load_after_tail("the rolled pods", left_of_step)
        .await?;

    let replies = stack.fake.replies(since, until).await?;
    let identifies = stack.fake.identifies().await?;
    let resumes: u32 = after.iter().map(|s| s.resumes).sum::<u32>()
        - before.values().map(|s| s.resumes).sum::<u32>();
    report!(
        "image roll of 4 pods: done in {:.1} s; new Identifies {}; resumes {resumes}; replies {replies:?}",
        took.as_secs_f64(),
        identifies.len() - identifies_before
    );
    ensure!(
        identifies.len() == identifies_before,
        "the roll spent session starts: {:#?}",
        &identifies[identifies_before..]
    );
    ensure_resumed(&before, &after, before.keys().copied())?;
    stack
        .fake
        .ensure_each_answered_once(&replies, since, until)
        .await
        .context("the roll")?;
    stack.fake.assert_no_violations("during the roll").await?;

    // 2. Past the budget: refused, nothing started.
    let left = stack.fake.budget().await?.remaining;
    ensure!(left == LEFT, "session starts left: {left}");
    let pods = PodLog::start(&ns);
    let step = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=16"])?;
    let refused = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
            && has_condition(s, "Resharding", "False", "InsufficientSessionStarts")
    })
    .await?;
    stack.remember("ShardSet", &refused);
    let message = condition(&refused, "Resharding")
        .context("Resharding")?
        .message
        .clone();
    report!(
        "kubectl scale 8 -> 16 with {left} session starts left: refused in {:.1} s: {message}",
        step.elapsed().as_secs_f64()
    );
    ensure!(
        message.contains("needs 16 session starts") && message.contains("no pod was started"),
        "{message}"
    );
    ensure!(
        has_condition(&refused, "Ready", "False", "InsufficientSessionStarts"),
        "Ready: {:?}",
        condition(&refused, "Ready")
    );
    let events = ns.kubectl(&[
        "get",
        "events",
        "--field-selector=reason=InsufficientSessionStarts,type=Warning",
    ])?;
    ensure!(
        events.contains("needs 16 session starts"),
        "no Warning Event: {events}"
    );
    // Back to 8: the refusal clears, and nothing of layout 16 ever existed.
    ns.kubectl(&["scale", "shardset/bot", "--replicas=8"])?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| {
        settled_at(s, 8) && has_condition(s, "Resharding", "False", "Idle")
    })
    .await?;
    let now = wait_pods(&ns, "bot", READY_WITHIN, |p| exactly_ready(p, &want)).await?;
    let seen = pods.seen();
    ensure!(
        seen.iter().all(|p| !p.starts_with("bot-16-")),
        "pods of layout 16 were created: {seen:?}"
    );
    ensure!(
        uids(&now) == uids(&rolled),
        "the running pods were touched: {:?} -> {:?}",
        uids(&rolled),
        uids(&now)
    );
    ensure!(
        stack.fake.identifies().await?.len() == identifies_before,
        "a session start was spent"
    );
    stack.fake.assert_no_violations("at the end").await?;
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
