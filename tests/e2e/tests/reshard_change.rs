//! A change of mind during a reshard, on kind (issue 8, `docs/resharding.md` "A change during a
//! reshard"): a ShardSet of 4 shards answering a steady message load is scaled to 8 (BlueGreen,
//! with a long `W` so the hand-over is caught while layout 8 is connected in standby), then
//! scaled back to 4 before layout 8 claims anything. The operator abandons layout 8
//! (`Resharding=True, reason=Abandoning`): its pods go (their sessions end with 1000), layout 4's
//! pods are never touched, and every message of the run is answered exactly once (the standby
//! layout never acted).

mod e2e_support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use e2e_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use shardset_e2e::TestNamespace;
use shardset_e2e::shardsets::{
    condition, exactly_ready, has_condition, settled_at, wait_pods, wait_shardset,
};

const READY_WITHIN: Duration = Duration::from_secs(180);
const LOAD: u32 = 40;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "reshard_change: {line}");
}

fn uids(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_back_during_standby_abandons_the_new_layout() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("reshard-chg").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    // W = 60 s: after layout 8 is Ready in standby the operator waits W before the old layout
    // claims, which leaves the test all the time it needs to change its mind.
    let extra = "    env:
    - {name: REPLY_TO_MESSAGES, value: \"true\"}
  handover:
    windowMs: 60000
";
    ns.apply(&stack.shardset_yaml("bot", 4, 2, extra))?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| settled_at(s, 4)).await?;
    let layout4 = layout_pods("bot", 4, 2);
    let want4: Vec<&str> = layout4.iter().map(String::as_str).collect();
    let first = wait_pods(&ns, "bot", READY_WITHIN, |p| exactly_ready(p, &want4)).await?;
    stack.fake.wait_layout_live(4, READY_WITHIN).await?;

    stack.fake.set_load(LOAD).await?;
    let since = now_ms();
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
    report(&format!(
        "layout 8 in standby {:.1} s after kubectl scale: {}",
        step.elapsed().as_secs_f64(),
        condition(&standby, "Resharding").map_or("", |c| c.message.as_str())
    ));

    // Back to 4: layout 8 is abandoned.
    let back = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=4"])?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| {
        settled_at(s, 4) && has_condition(s, "Resharding", "False", "Idle")
    })
    .await?;
    let now = wait_pods(&ns, "bot", READY_WITHIN, |p| exactly_ready(p, &want4)).await?;
    report(&format!(
        "kubectl scale back to 4: layout 8 gone {:.1} s later; Resharding went {:?}",
        back.elapsed().as_secs_f64(),
        steps.seen()
    ));
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
    let tail_from = now_ms();
    loop {
        let r = stack
            .fake
            .replies(tail_from, now_ms().saturating_sub(500))
            .await?;
        if r.messages >= u64::from(LOAD) && r.none == 0 {
            break;
        }
        ensure!(
            back.elapsed() < READY_WITHIN,
            "layout 4 does not answer: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let until = now_ms().saturating_sub(500);
    stack.fake.set_load(0).await?;
    let replies = stack.fake.replies(since, until).await?;
    report(&format!("replies over the whole run: {replies:?}"));
    if replies.none > 0 || replies.multiple > 0 {
        let span = unanswered_span(&stack.fake, since, until).await?;
        bail!(
            "{} messages unanswered (created between {span:?}), {} answered twice: {replies:?}",
            replies.none,
            replies.multiple
        );
    }
    ensure!(
        replies.exactly_once == replies.messages && replies.messages > 0,
        "{replies:?}"
    );
    // Layout 8's sessions ended for good (retired: close 1000), nothing left to resume.
    let left: Vec<_> = stack
        .fake
        .sessions()
        .await?
        .into_iter()
        .filter(|s| s.num_shards == 8 && (s.connected || s.resumable_until_ms.is_some()))
        .collect();
    ensure!(left.is_empty(), "layout 8 sessions left: {left:#?}");
    stack.fake.assert_no_violations("after the change").await?;
    stack.finish().await?;
    report(&format!(
        "whole scenario {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
