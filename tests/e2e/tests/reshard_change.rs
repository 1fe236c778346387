//! A change of mind during a reshard, on kind (issue 8, `docs/resharding.md` "A change during a
//! reshard"): a ShardSet of 4 shards answering a steady message load is scaled to 8 (BlueGreen,
//! with a long `W` so the hand-over is caught while layout 8 is connected in standby), then
//! scaled back to 4 before layout 8 claims anything. The operator abandons layout 8
//! (`Resharding=True, reason=Abandoning`): its pods go (their sessions end with 1000), layout 4's
//! pods are never touched, and every message of the run is answered exactly once (the standby
//! layout never acted).

use std::time::{Duration, Instant};

use anyhow::ensure;
use shardset_e2e::charts::{Placement, Stack};
use shardset_e2e::recorders::StepLog;
use shardset_e2e::shardsets::{
    condition, exactly_ready, has_condition, layout_pods, settled_at, uids, wait_pods,
    wait_shardset,
};
use shardset_e2e::{TestNamespace, report};

const READY_WITHIN: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_back_during_standby_abandons_the_new_layout() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("reshard-chg").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    // W = 60 s: after layout 8 is Ready in standby the operator waits W before the old layout
    // claims, which leaves the test all the time it needs to change its mind.
    let bot = stack
        .shardset("bot", 4, 2)
        .replying()
        .handover_window_ms(60_000);
    let first = stack.serve(&bot, READY_WITHIN).await?.pods;
    let layout4 = layout_pods("bot", 4, 2);
    let want4: Vec<&str> = layout4.iter().map(String::as_str).collect();

    let since = stack.start_load().await?;
    let steps = StepLog::start(&ns, "bot");
    let step = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=8"])?;
    // Layout 8 connected, READY and acknowledged, in standby: the operator now waits W.
    let standby = wait_shardset(&ns, "bot", READY_WITHIN, |s| {
        has_condition(s, "Resharding", "True", "StartingNewLayout")
            && condition(s, "Resharding").is_some_and(|c| c.message.contains("waiting W"))
    })
    .await?;
    stack.fake.wait_layout_live(8, READY_WITHIN).await?;
    report!(
        "layout 8 in standby {:.1} s after kubectl scale: {}",
        step.elapsed().as_secs_f64(),
        condition(&standby, "Resharding").map_or("", |c| c.message.as_str())
    );

    // Back to 4: layout 8 is abandoned.
    let back = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=4"])?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| {
        settled_at(s, 4) && has_condition(s, "Resharding", "False", "Idle")
    })
    .await?;
    let now = wait_pods(&ns, "bot", READY_WITHIN, |p| exactly_ready(p, &want4)).await?;
    report!(
        "kubectl scale back to 4: layout 8 gone {:.1} s later; Resharding went {:?}",
        back.elapsed().as_secs_f64(),
        steps.seen()
    );
    ensure!(
        uids(&now) == uids(&first),
        "layout 4's pods were touched: {:?} -> {:?}",
        uids(&first),
        uids(&now)
    );
    ensure!(
        steps.seen().iter().any(|s| s == "True=Abandoning"),
        "Resharding went {:?}",
        steps.seen()
    );

    // A second of load answered after the change, then the whole run is counted.
    let left_of_step = READY_WITHIN.saturating_sub(back.elapsed());
    let until = stack.stop_load_after_tail("layout 4", left_of_step).await?;
    let replies = stack.fake.replies(since, until).await?;
    report!("replies over the whole run: {replies:?}");
    stack
        .fake
        .ensure_each_answered_once(&replies, since, until)
        .await?;
    // Layout 8's sessions ended for good (retired: close 1000), nothing left to resume.
    stack.fake.ensure_layout_ended(8).await?;
    stack.fake.assert_no_violations("after the change").await?;
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
