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
//!   ended for good (closed 1000, nothing left to resume).

mod e2e_support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e_support::*;
use fake_discord::control::IdentifyOutcome;
use shardset_e2e::TestNamespace;
use shardset_e2e::shardsets::{exactly_ready, settled_at, wait_pods, wait_shardset};

const READY_WITHIN: Duration = Duration::from_secs(240);
/// Synthetic messages per second over the fake's 400 guilds.
const LOAD: u32 = 40;
/// `W` (`spec.handover.windowMs`): covers how far apart the two layouts handle one event on this
/// busy 2-core machine, with room to spare; the hand-over waits it three times.
const WINDOW_MS: u32 = 4_000;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "reshard_blue_green: {line}");
}

/// `spec` lines for a replying worker with this scenario's `W` (see `Stack::shardset_yaml`).
fn extra_spec() -> String {
    format!(
        "    env:
    - {{name: REPLY_TO_MESSAGES, value: \"true\"}}
  handover:
    windowMs: {WINDOW_MS}
"
    )
}

/// Waits until layout `total` serves alone: status settled, exactly its pods Ready, every shard
/// live in the fake.
async fn wait_layout(ns: &TestNamespace, stack: &Stack<'_>, total: u32) -> anyhow::Result<()> {
    let ss = wait_shardset(ns, "bot", READY_WITHIN, move |s| settled_at(s, total)).await?;
    stack.remember("ShardSet", &ss);
    let expected = layout_pods("bot", total, 4);
    let want: Vec<&str> = expected.iter().map(String::as_str).collect();
    wait_pods(ns, "bot", READY_WITHIN, |p| exactly_ready(p, &want)).await?;
    stack.fake.wait_layout_live(total, READY_WITHIN).await?;
    Ok(())
}

/// Polls the reply log until every message of `[since, until)` is answered (or `timeout`).
async fn wait_answered(
    fake: &Fake,
    since: u64,
    until: u64,
    timeout: Duration,
) -> anyhow::Result<fake_discord::control::RepliesReport> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = fake.replies(since, until).await?;
        if r.none == 0 || Instant::now() > deadline {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_16_to_32_under_load_acts_on_every_message_exactly_once() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("reshard-bg").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    ns.apply(&stack.shardset_yaml("bot", 16, 4, &extra_spec()))?;
    wait_layout(&ns, &stack, 16).await?;
    report(&format!(
        "16 shards / 4 pods serving {:.1} s after install began",
        started.elapsed().as_secs_f64()
    ));

    // The load, and proof that the handler answers before anything changes.
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
            "layout 16 does not answer the load: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // kubectl scale, then wait for layout 32 alone.
    let identifies_before = stack.fake.identifies().await?.len();
    let budget_before = stack.fake.budget().await?.remaining;
    let steps = StepLog::start(&ns, "bot");
    let pods = PodLog::start(&ns);
    let scaled = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=32"])?;
    wait_layout(&ns, &stack, 32).await?;
    let took = scaled.elapsed();
    let until = now_ms();
    stack.fake.set_load(0).await?;
    report(&format!(
        "kubectl scale 16 -> 32: layout 32 alone and Ready in {:.1} s; Resharding went {:?}",
        took.as_secs_f64(),
        steps.seen()
    ));

    // Exactly once, for every message from before the scale to after the old pods were gone.
    let replies = wait_answered(&stack.fake, since, until, Duration::from_secs(30)).await?;
    report(&format!("replies over the whole run: {replies:?}"));
    ensure!(
        replies.messages >= u64::from(LOAD) * took.as_secs().max(1),
        "the load ran: {replies:?}"
    );
    if replies.none > 0 || replies.multiple > 0 {
        let span = unanswered_span(&stack.fake, since, until).await?;
        bail!(
            "{} messages unanswered (created between {span:?}, scale at {}), {} answered more than once: {replies:?}",
            replies.none,
            until - took.as_millis() as u64,
            replies.multiple
        );
    }
    ensure!(replies.exactly_once == replies.messages, "{replies:?}");

    // Budget: one Identify per new shard, nothing else.
    let identifies = stack.fake.identifies().await?;
    let spent = &identifies[identifies_before..];
    let accepted: BTreeSet<u32> = spent
        .iter()
        .filter(|r| r.num_shards == 32 && r.outcome == IdentifyOutcome::Accepted)
        .map(|r| r.shard)
        .collect();
    let budget_after = stack.fake.budget().await?.remaining;
    report(&format!(
        "Identifies during the reshard: {} ({} shards of layout 32 accepted); budget {budget_before} -> {budget_after}",
        spent.len(),
        accepted.len()
    ));
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
    let app_id = ns
        .api::<shardset_operator::crd::ShardSet>()
        .get("bot")
        .await?
        .status
        .and_then(|s| s.application_id)
        .context("status.applicationId")?;
    let claims = stack
        .redis_keys(&app_id)
        .await?
        .iter()
        .filter(|k| k.contains(":claim:"))
        .count();
    report(&format!("events claimed during the hand-over: {claims}"));
    ensure!(
        claims > 0,
        "no event was claimed: the claim phase never ran"
    );
    // The old layout ended its sessions (1000): none is left live or resumable.
    let old: Vec<_> = stack
        .fake
        .sessions()
        .await?
        .into_iter()
        .filter(|s| s.num_shards == 16 && (s.connected || s.resumable_until_ms.is_some()))
        .collect();
    ensure!(old.is_empty(), "layout 16 sessions left: {old:#?}");

    stack.snapshot("after the reshard")?;
    stack.finish().await?;
    report(&format!(
        "whole scenario {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
