//! Zero-downtime resharding on kind (issue 8, `docs/resharding.md`): a ShardSet of 16 shards
//! answering a steady synthetic message load from the fake Discord is scaled to 32 with
//! `kubectl scale` (BlueGreen, the default). The proof:
//!
//! - every message the fake created from before the scale until the old layout's pods are gone
//!   got **exactly one** reply (the workers run the default handler with `REPLY_TO_MESSAGES`:
//!   each acted-on message is answered through `POST /channels/{id}/messages`, and the fake's
//!   `/control/replies` counts the answers per message id);
//! - the reshard spent exactly 32 session starts (one accepted Identify per shard of the new
//!   layout, the fake's budget down by 32) and the fake recorded no violation;
//! - the status went through the hand-over's steps (`Resharding=True`, then `False/Idle`), events
//!   were claimed in Redis (the claim phase ran under the load), and the old layout's sessions
//!   ended for good (closed 1000, nothing left to resume);
//! - `Available` stayed True through the whole reshard (the old layout acts until the new one
//!   does), while `Ready` went False and back (issue 15).
//!
//! The ShardSet leaves `spec.image` unset: its pods run the worker image the operator chart
//! passes to the operator (`workerImage`), and it gets its PodDisruptionBudget (issue 15).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use shardset_e2e::charts::fake::IdentifyOutcome;
use shardset_e2e::charts::{LOAD, Placement, Stack, WORKER_IMAGE, now_ms};
use shardset_e2e::recorders::{ConditionLog, PodLog, StepLog};
use shardset_e2e::shardsets::{application_id, layout_pods};
use shardset_e2e::{TestNamespace, report};

const READY_WITHIN: Duration = Duration::from_secs(240);
/// `W` (`spec.handover.windowMs`): covers how far apart the two layouts handle one event on this
/// busy 2-core machine, with room to spare; the hand-over waits it three times.
const WINDOW_MS: u32 = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_16_to_32_under_load_acts_on_every_message_exactly_once() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("reshard-bg").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    let bot = stack
        .shardset("bot", 16, 4)
        .without("image")
        .replying()
        .handover_window_ms(WINDOW_MS);
    let live = stack.serve(&bot, READY_WITHIN).await?;
    report!(
        "16 shards / 4 pods serving {:.1} s after install began",
        started.elapsed().as_secs_f64()
    );
    // No spec.image: the chart's default worker image.
    for pod in &live.pods {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref());
        ensure!(
            image == Some(WORKER_IMAGE),
            "pod {:?} runs {image:?}",
            pod.metadata.name
        );
    }
    ensure_disruption_budget(&ns, "bot", 3)?;

    // The load, and proof that the handler answers before anything changes.
    let since = stack.start_load().await?;

    // kubectl scale, then wait for layout 32 alone.
    let identifies_before = stack.fake.identifies().await?.len();
    let budget_before = stack.fake.budget().await?.remaining;
    let steps = StepLog::start(&ns, "bot");
    let available = ConditionLog::start(&ns, "bot", "Available");
    let ready = ConditionLog::start(&ns, "bot", "Ready");
    let pods = PodLog::start(&ns);
    let scaled = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=32"])?;
    stack.wait_layout("bot", 32, 4, READY_WITHIN).await?;
    let took = scaled.elapsed();
    let until = now_ms();
    stack.fake.set_load(0).await?;
    report!(
        "kubectl scale 16 -> 32: layout 32 alone and Ready in {:.1} s; Resharding went {:?}",
        took.as_secs_f64(),
        steps.seen()
    );

    // Exactly once, for every message from before the scale to after the old pods were gone.
    let replies = stack
        .fake
        .replies_settled(since, until, Duration::from_secs(30))
        .await?;
    report!("replies over the whole run: {replies:?}");
    ensure!(
        replies.messages >= u64::from(LOAD) * took.as_secs().max(1),
        "the load ran: {replies:?}"
    );
    stack
        .fake
        .ensure_each_answered_once(&replies, since, until)
        .await
        .with_context(|| format!("scale at {}", until - took.as_millis() as u64))?;

    // Budget: one Identify per new shard, nothing else.
    let identifies = stack.fake.identifies().await?;
    let spent = &identifies[identifies_before..];
    let accepted: BTreeSet<u32> = spent
        .iter()
        .filter(|r| r.num_shards == 32 && r.outcome == IdentifyOutcome::Accepted)
        .map(|r| r.shard)
        .collect();
    let budget_after = stack.fake.budget().await?.remaining;
    report!(
        "Identifies during the reshard: {} ({} shards of layout 32 accepted); budget {budget_before} -> {budget_after}",
        spent.len(),
        accepted.len()
    );
    ensure!(
        spent.len() == 32 && accepted == (0..32).collect(),
        "expected one accepted Identify per shard of layout 32, got {spent:#?}"
    );
    ensure!(
        budget_before - budget_after == 32,
        "session starts spent: {budget_before} -> {budget_after}"
    );
    stack
        .fake
        .assert_no_violations("during the reshard")
        .await?;

    // Available never wavered; Ready said the target was not fully up meanwhile.
    let (available, ready) = (available.seen(), ready.seen());
    report!("Available went {available:?}; Ready went {ready:?}");
    ensure!(
        available == ["True=MinimumShardsAvailable"],
        "Available went {available:?}"
    );
    ensure!(
        ready.iter().any(|r| r == "False=Resharding")
            && ready.last().map(String::as_str) == Some("True=AllShardsReady"),
        "Ready went {ready:?}"
    );
    // The budget follows the pods: 8 of layout 32, one may go.
    ensure_disruption_budget(&ns, "bot", 7)?;

    // The hand-over's steps, and its end.
    let seen = steps.seen();
    ensure!(
        seen.iter().any(|s| s == "True=StartingNewLayout")
            && seen.iter().any(|s| s == "True=BothLayoutsClaiming")
            && seen.last().map(String::as_str) == Some("False=Idle"),
        "Resharding condition went {seen:?}"
    );
    let created: BTreeSet<String> = pods
        .seen()
        .into_iter()
        .filter(|p| !p.starts_with("bot-16-"))
        .filter(|p| p.starts_with("bot-"))
        .collect();
    ensure!(
        created == layout_pods("bot", 32, 4).into_iter().collect(),
        "pods created by the reshard: {created:?}"
    );
    let events = ns.kubectl(&["get", "events", "--field-selector=reason=HandedOver"])?;
    ensure!(
        events.contains("layout 32 acts on every event now"),
        "no HandedOver Event: {events}"
    );
    // The claim phase ran under the load: both layouts claimed events (`P:claim:<key>`, kept
    // for the claim TTL).
    let app_id = application_id(&ns, "bot").await?;
    let claims = stack
        .redis_keys(&app_id)
        .await?
        .iter()
        .filter(|k| k.contains(":claim:"))
        .count();
    report!("events claimed during the hand-over: {claims}");
    ensure!(
        claims > 0,
        "no event was claimed: the claim phase never ran"
    );
    // The old layout ended its sessions (1000): none is left live or resumable.
    stack.fake.ensure_layout_ended(16).await?;

    stack.snapshot("after the reshard")?;
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The ShardSet `name` has its PodDisruptionBudget: owned by it, over its pods, with
/// `minAvailable` = `min_available` (its pods minus one).
fn ensure_disruption_budget(
    ns: &TestNamespace,
    name: &str,
    min_available: u32,
) -> anyhow::Result<()> {
    let pdb: serde_json::Value =
        serde_json::from_str(&ns.kubectl(&["get", "pdb", name, "-o", "json"])?)?;
    let owner = &pdb["metadata"]["ownerReferences"][0];
    ensure!(
        owner["kind"] == "ShardSet" && owner["name"] == name && owner["controller"] == true,
        "owner: {owner}"
    );
    ensure!(
        pdb["spec"]["minAvailable"] == min_available
            && pdb["spec"]["selector"]["matchLabels"]["shardset.io/shardset"] == name,
        "spec: {}",
        pdb["spec"]
    );
    report!(
        "PodDisruptionBudget {name}: minAvailable {min_available}, status {}",
        pdb["status"]
    );
    Ok(())
}
