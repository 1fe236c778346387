//! `reshardStrategy: Recreate` on kind (issue 8): a ShardSet of 4 shards answering a steady
//! synthetic message load is scaled to 8. Recreate stops the old layout first (its sessions end
//! with 1000) and only then starts the new one, so the messages in between are acted on by no
//! one: the test **measures that gap** (from the oldest to the newest unanswered message, as the
//! fake's reply log shows it) and prints it. It also checks what Recreate must still guarantee:
//! nothing answered twice, the gap is one interval (everything after it is answered), one
//! Identify per new shard, no violation.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use shardset_e2e::charts::fake::IdentifyOutcome;
use shardset_e2e::charts::{Placement, Stack, now_ms};
use shardset_e2e::recorders::StepLog;
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
    ensure!(
        steps.seen().iter().any(|s| s == "True=StoppingOldLayout")
            && steps.seen().last().map(String::as_str) == Some("False=Idle"),
        "Resharding condition went {:?}",
        steps.seen()
    );
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
