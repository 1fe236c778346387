//! `reshardStrategy: Recreate` on kind (issue 8): a ShardSet of 4 shards answering a steady
//! synthetic message load is scaled to 8. Recreate stops the old layout first (its sessions end
//! with 1000) and only then starts the new one, so the messages in between are acted on by no
//! one: the test **measures that gap** (from the oldest to the newest unanswered message, as the
//! fake's reply log shows it) and prints it. It also checks what Recreate must still guarantee:
//! nothing answered twice, the gap is one interval (everything after it is answered), one
//! Identify per new shard, no violation.
//!
//! Then issue 11 item 13: a layout one of whose pods never ran does not hold a reshard. The image
//! is changed to one that is not there (the roll replaces one pod, which stays in
//! `ErrImageNeverPull` while the others serve), then `kubectl patch` asks for 4
//! shards and the right image at once: the Recreate stops the old layout without waiting for an
//! acknowledgement from the pod that never ran, and layout 4 serves.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use shardset_e2e::charts::fake::IdentifyOutcome;
use shardset_e2e::charts::{Placement, Stack, WORKER_IMAGE, now_ms};
use shardset_e2e::recorders::StepLog;
use shardset_e2e::shardsets::wait_pods;
use shardset_e2e::{TestNamespace, report};

const READY_WITHIN: Duration = Duration::from_secs(180);
/// How long the new layout may take to answer a second of the load.
const ANSWERING_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_leaves_a_measured_gap_and_nothing_twice() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("reshard-rc").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    let bot = stack
        .shardset("bot", 4, 2)
        .reshard_strategy("Recreate")
        .replying();
    stack.serve(&bot, READY_WITHIN).await?;
    let since = stack.start_load().await?;

    let identifies_before = stack.fake.identifies().await?.len();
    let steps = StepLog::start(&ns, "bot");
    let scaled = Instant::now();
    let scaled_ms = now_ms();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=8"])?;
    stack.wait_layout("bot", 8, 2, READY_WITHIN).await?;
    let took = scaled.elapsed();
    // Keep the load on until the new layout has answered a full second of it: the tail after the
    // gap must be answered, which is what bounds the gap from above.
    let until = stack
        .stop_load_after_tail("layout 8", ANSWERING_WITHIN)
        .await?;

    let replies = stack.fake.replies(since, until).await?;
    let (first, last) = stack
        .fake
        .unanswered_span(since, until)
        .await?
        .context("Recreate left no unanswered message: the old layout cannot have stopped before the new one started")?;
    let gap_s = (last - first) as f64 / 1000.0;
    report!(
        "kubectl scale 4 -> 8 (Recreate): layout 8 Ready in {:.1} s; Resharding went {:?}",
        took.as_secs_f64(),
        steps.seen()
    );
    report!(
        "GAP: {gap_s:.1} s without a reply (first unanswered message {:.1} s after the scale, last {:.1} s); {} of {} messages lost, {} answered twice",
        (first as f64 - scaled_ms as f64) / 1000.0,
        (last as f64 - scaled_ms as f64) / 1000.0,
        replies.none,
        replies.messages,
        replies.multiple
    );
    ensure!(replies.multiple == 0, "answered twice: {replies:?}");
    // One interval: every message outside [first, last] was answered.
    let before = stack.fake.replies(since, first).await?;
    let after = stack.fake.replies(last + 1, until).await?;
    ensure!(
        before.none == 0 && after.none == 0 && after.messages > 0,
        "unanswered messages outside the gap: before {before:?}, after {after:?}"
    );

    let identifies = stack.fake.identifies().await?;
    let spent = &identifies[identifies_before..];
    ensure!(
        spent.len() == 8
            && spent
                .iter()
                .all(|r| r.num_shards == 8 && r.outcome == IdentifyOutcome::Accepted),
        "expected one accepted Identify per shard of layout 8: {spent:#?}"
    );
    stack.fake.assert_no_violations("during Recreate").await?;
    ensure_went_through_stopping(&steps)?;

    // Item 13: a pod that never ran holds no session and acknowledges nothing.
    let step = Instant::now();
    ns.kubectl(&[
        "patch",
        "shardset/bot",
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"shardset/never-pulled:dev"}}"#,
    ])?;
    let stuck = wait_pods(&ns, "bot", READY_WITHIN, |pods| {
        pods.iter().any(|p| image_pull_failing(p).is_some())
    })
    .await?;
    let stuck: Vec<String> = stuck
        .iter()
        .filter_map(|p| {
            image_pull_failing(p)
                .map(|r| format!("{} ({r})", p.metadata.name.as_deref().unwrap_or_default()))
        })
        .collect();
    report!(
        "image changed to one that cannot be pulled: {stuck:?} after {:.1} s",
        step.elapsed().as_secs_f64()
    );
    let steps = StepLog::start(&ns, "bot");
    let step = Instant::now();
    let fix = format!(r#"{{"spec":{{"shards":4,"image":"{WORKER_IMAGE}"}}}}"#);
    ns.kubectl(&["patch", "shardset/bot", "--type=merge", "-p", &fix])?;
    stack.wait_layout("bot", 4, 2, READY_WITHIN).await?;
    report!(
        "kubectl patch 8 -> 4 shards and the right image, with {} pod(s) of layout 8 that never ran: layout 4 Ready in {:.1} s; Resharding went {:?}",
        stuck.len(),
        step.elapsed().as_secs_f64(),
        steps.seen()
    );
    ensure_went_through_stopping(&steps)?;
    stack
        .fake
        .assert_no_violations("after the reshard past pods that never ran")
        .await?;
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The Resharding condition went through `StoppingOldLayout` and ended `Idle`.
fn ensure_went_through_stopping(steps: &StepLog) -> anyhow::Result<()> {
    let seen = steps.seen();
    ensure!(
        seen.iter().any(|s| s == "True=StoppingOldLayout")
            && seen.last().map(String::as_str) == Some("False=Idle"),
        "Resharding condition went {seen:?}"
    );
    Ok(())
}

/// The reason a container of `pod` waits on its image (`ErrImageNeverPull` under the chart's
/// `Never` pull policy, `ErrImagePull`, `ImagePullBackOff`).
fn image_pull_failing(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .find(|r| ["ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"].contains(&r.as_str()))
}
