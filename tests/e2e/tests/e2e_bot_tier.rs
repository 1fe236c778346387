//! The bot tier on kind (issue 14): a ShardSet with `spec.bus` publishes every dispatch to the
//! operator chart's NATS (JetStream), and the `demo-handler` Deployment (tests/demo/demo-handler.yaml,
//! the Rust example on the shardset-handler library) answers every MESSAGE_CREATE through the
//! fake's REST API; the workers themselves reply to nothing. Under the fake's steady message load:
//! the handlers scale 1 → 3, a handler pod is deleted, a worker pod is deleted, the NATS pod is
//! restarted (its streams on the chart's PersistentVolumeClaim), and the ShardSet is resharded
//! BlueGreen 16 → 24. The proof:
//!
//! - every message the fake created over the whole run got **exactly one** reply (the fake's
//!   `/control/replies`: replies a handler repeated after a redelivery are deduplicated by
//!   Discord's `nonce` + `enforce_nonce`, and counted apart);
//! - the handlers saw each guild's messages in gateway order on first delivery (their
//!   `shardset_handler_reorderings_total` is 0 on every replica, read before a replica is deleted
//!   and at the end);
//! - the fake recorded no violation.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use shardset_e2e::charts::{NATS_URL, Stack};
use shardset_e2e::secrets::TOKEN_SECRET;
use shardset_e2e::shardsets::layout_pods;
use shardset_e2e::tools::repo_path;
use shardset_e2e::{TestNamespace, kubectl, report};

const READY_WITHIN: Duration = Duration::from_secs(240);
/// `W` of the hand-over (as in reshard_blue_green.rs: room for this busy 2-core machine).
const WINDOW_MS: u32 = 4_000;
const HANDLER_SELECTOR: &str = "app.kubernetes.io/name=demo-handler";

/// The demo's handler Deployment, pointed at this namespace's stack and bot, with one replica.
fn handler_manifest(ns: &str, bot: &str) -> anyhow::Result<String> {
    let demo = std::fs::read_to_string(repo_path("tests/demo/demo-handler.yaml"))
        .context("tests/demo/demo-handler.yaml")?;
    Ok(demo
        .replace(
            "nats://shardset-operator-nats.shardset-system:4222",
            NATS_URL,
        )
        .replace("fake-discord.shardset-demo", "fake-discord")
        .replace(
            "shardset-shardset-demo-demo-bot",
            &shardset_contract::bus::default_stream_name(ns, bot),
        )
        .replace("name: fake-discord\n", &format!("name: {TOKEN_SECRET}\n"))
        .replace("replicas: 2\n", "replicas: 1\n"))
}

/// The handler pods' names.
fn handler_pods(ns: &TestNamespace) -> anyhow::Result<Vec<String>> {
    Ok(ns
        .kubectl(&["get", "pods", "-l", HANDLER_SELECTOR, "-o", "name"])?
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `shardset_handler_reorderings_total` of one handler pod, through the API server's pod proxy.
fn reorderings(ns: &TestNamespace, pod: &str) -> anyhow::Result<u64> {
    let text = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/{}/pods/{pod}:8080/proxy/metrics",
            ns.name
        ),
    ])?;
    text.lines()
        .find_map(|l| l.strip_prefix("shardset_handler_reorderings_total "))
        .context("no shardset_handler_reorderings_total")?
        .trim()
        .parse::<f64>()
        .map(|v| v as u64)
        .context("reorderings value")
}

fn rollout(ns: &TestNamespace, deployment: &str) -> anyhow::Result<()> {
    ns.kubectl(&["rollout", "status", deployment, "--timeout=180s"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_services_answer_every_message_once_through_nats() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("bot-tier").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install_with_nats(&ns).await?;
    let bot = stack
        .shardset("bot", 16, 4)
        .handover_window_ms(WINDOW_MS)
        .spec(serde_json::json!({"bus": {"url": NATS_URL}}));
    stack.serve(&bot, READY_WITHIN).await?;
    ns.apply(&handler_manifest(&ns.name, "bot")?)?;
    rollout(&ns, "deployment/demo-handler")?;
    report!(
        "16 shards publishing to NATS, 1 handler replica, {:.1} s after install began",
        started.elapsed().as_secs_f64()
    );

    // The load, answered by the handlers alone before anything changes.
    let since = stack.start_load().await?;
    let mut reordered = 0;

    ns.kubectl(&["scale", "deployment/demo-handler", "--replicas=3"])?;
    rollout(&ns, "deployment/demo-handler")?;
    let victim = handler_pods(&ns)?
        .into_iter()
        .next()
        .context("a handler pod")?;
    reordered += reorderings(&ns, &victim)?;
    ns.kubectl(&["delete", "pod", &victim, "--wait=false"])?;
    report!("handlers scaled 1 -> 3, then {victim} deleted");

    let worker = layout_pods("bot", 16, 4)
        .into_iter()
        .next()
        .context("a worker pod")?;
    ns.kubectl(&["delete", "pod", &worker])?;
    ns.kubectl(&["delete", "pod", "-l", "app.kubernetes.io/component=nats"])?;
    rollout(&ns, "deployment/shardset-operator-nats")?;
    stack.wait_layout("bot", 16, 4, READY_WITHIN).await?;
    report!("worker pod {worker} deleted and NATS restarted: layout 16 serving again");

    let scaled = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=24"])?;
    stack.wait_layout("bot", 24, 4, READY_WITHIN).await?;
    report!(
        "BlueGreen 16 -> 24 with the bus: layout 24 alone in {:.1} s",
        scaled.elapsed().as_secs_f64()
    );
    let until = stack
        .stop_load_after_tail("the handlers after the reshard", READY_WITHIN)
        .await?;

    let replies = stack
        .fake
        .replies_settled(since, until, Duration::from_secs(60))
        .await?;
    report!("replies over the whole run: {replies:?}");
    stack
        .fake
        .ensure_each_answered_once(&replies, since, until)
        .await?;
    for pod in handler_pods(&ns)? {
        reordered += reorderings(&ns, &pod)?;
    }
    ensure!(
        reordered == 0,
        "{reordered} messages handled out of guild order"
    );
    stack.fake.assert_no_violations("the bot tier run").await?;
    report!(
        "bot tier: {} messages, each answered once, 0 reorderings, in {:.1} s",
        replies.messages,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
