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

mod e2e_support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use e2e_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use shardset_e2e::TestNamespace;
use shardset_e2e::shardsets::{has_condition, settled_at, wait_pods, wait_shardset};

const READY_WITHIN: Duration = Duration::from_secs(240);
const LOAD: u32 = 40;
const ROLLED_IMAGE: &str = "shardset/shard-worker:e2e-roll";
/// Session starts the fake has left once layout 8 runs.
const LEFT: u32 = 5;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "reshard_roll: {line}");
}

fn image_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.containers.first()?.image.as_deref()
}

/// Pods by name → uid.
fn uids(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
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
    let extra = "    env:
    - {name: REPLY_TO_MESSAGES, value: \"true\"}
";
    ns.apply(&stack.shardset_yaml("bot", 8, 2, extra))?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| settled_at(s, 8)).await?;
    let layout = layout_pods("bot", 8, 2);
    let want: Vec<&str> = layout.iter().map(String::as_str).collect();
    let first_pods = wait_pods(&ns, "bot", READY_WITHIN, |p| {
        shardset_e2e::shardsets::exactly_ready(p, &want)
    })
    .await?;
    let before = live_sessions(&stack.fake.wait_layout_live(8, READY_WITHIN).await?, 8);

    // 1. The roll, under load.
    stack.fake.set_load(LOAD).await?;
    let since = now_ms();
    let warm = Instant::now();
    loop {
        let r = stack
            .fake
            .replies(since, now_ms().saturating_sub(1_000))
            .await?;
        if r.messages >= u64::from(LOAD) && r.exactly_once == r.messages {
            break;
        }
        ensure!(
            warm.elapsed() < Duration::from_secs(60),
            "layout 8 does not answer the load: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let identifies_before = stack.fake.identifies().await?.len();
    let old_uids = uids(&first_pods);
    let step = Instant::now();
    ns.kubectl(&[
        "patch",
        "shardset/bot",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"image":"{ROLLED_IMAGE}"}}}}"#),
    ])?;
    let rolled = wait_pods(&ns, "bot", READY_WITHIN, |pods| {
        shardset_e2e::shardsets::exactly_ready(pods, &want)
            && pods.iter().all(|p| {
                image_of(p) == Some(ROLLED_IMAGE)
                    && p.uid().as_deref() != old_uids.get(&p.name_any()).map(String::as_str)
            })
    })
    .await?;
    wait_shardset(&ns, "bot", READY_WITHIN, |s| settled_at(s, 8)).await?;
    let after = live_sessions(&stack.fake.wait_layout_live(8, READY_WITHIN).await?, 8);
    let took = step.elapsed();
    // A second of load answered by the rolled pods, then stop.
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
            step.elapsed() < READY_WITHIN,
            "the rolled pods do not answer: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let until = now_ms().saturating_sub(500);
    stack.fake.set_load(0).await?;

    let replies = stack.fake.replies(since, until).await?;
    let identifies = stack.fake.identifies().await?;
    let resumes: u32 = after.values().map(|s| s.resumes).sum::<u32>()
        - before.values().map(|s| s.resumes).sum::<u32>();
    report(&format!(
        "image roll of 4 pods: done in {:.1} s; new Identifies {}; resumes {resumes}; replies {replies:?}",
        took.as_secs_f64(),
        identifies.len() - identifies_before
    ));
    ensure!(
        identifies.len() == identifies_before,
        "the roll spent session starts: {:#?}",
        &identifies[identifies_before..]
    );
    for (shard, old) in &before {
        let new = after.get(shard).context("live session")?;
        ensure!(
            new.session_id == old.session_id && new.resumes > old.resumes,
            "shard {shard} was not resumed: before {old:#?}, after {new:#?}"
        );
    }
    if replies.none > 0 || replies.multiple > 0 {
        let span = unanswered_span(&stack.fake, since, until).await?;
        anyhow::bail!(
            "the roll lost {} messages (created between {span:?}) and doubled {}: {replies:?}",
            replies.none,
            replies.multiple
        );
    }
    ensure!(
        replies.exactly_once == replies.messages && replies.messages > 0,
        "{replies:?}"
    );
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
    let condition = shardset_e2e::shardsets::condition(&refused, "Resharding")
        .context("Resharding")?
        .message
        .clone();
    report(&format!(
        "kubectl scale 8 -> 16 with {left} session starts left: refused in {:.1} s: {condition}",
        step.elapsed().as_secs_f64()
    ));
    ensure!(
        condition.contains("needs 16 session starts") && condition.contains("no pod was started"),
        "{condition}"
    );
    ensure!(
        has_condition(&refused, "Ready", "False", "InsufficientSessionStarts"),
        "Ready: {:?}",
        shardset_e2e::shardsets::condition(&refused, "Ready")
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
    let now = wait_pods(&ns, "bot", READY_WITHIN, |p| {
        shardset_e2e::shardsets::exactly_ready(p, &want)
    })
    .await?;
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
    report(&format!(
        "whole scenario {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
