//! End to end: a ShardSet whose Secret holds a token Discord refuses.
//!
//! With the charts installed as a user would, a ShardSet pointing at a wrong token:
//! 1. gets `Ready=False`/`Degraded=True` with reason `InvalidToken`, a message naming the Secret
//!    (never the token) and a Warning Event;
//! 2. never has a pod (so nothing can crash-loop), the fake sees no gateway connection and no
//!    Identify (the budget allows at most one attempt; none is spent), and however often the
//!    operator reconciles, it asked Discord about that token once;
//! 3. once the right token is put into the same Secret, the ShardSet becomes Ready by itself with
//!    one Identify per shard and zero violations;
//! 4. neither token appears in any log, Event, status or `kubectl get -o yaml`, and the operator's
//!    log has no `forbidden`.

mod e2e_support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use e2e_support::*;
use futures_util::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::watcher;
use shardset_e2e::TestNamespace;
use shardset_e2e::shardsets::{condition, has_condition, settled_at, wait_shardset};

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e_bad_token: {line}");
}

/// Calls the operator made to Discord's `/users/@me` that were not answered 200.
fn refused_calls(metrics: &BTreeMap<String, f64>) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| {
            k.starts_with("shardset_operator_discord_requests_total{")
                && k.contains("users/@me")
                && !k.contains("result=\"ok\"")
        })
        .map(|(_, v)| v)
        .sum()
}

/// Polls the leader's metrics until `reconciles_total` reaches `at_least` (the operator has no
/// watchable record of its passes; the wait ends as soon as it holds).
async fn wait_reconciles(
    stack: &Stack<'_>,
    at_least: f64,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = stack.leader_metrics().await?;
        let done = metrics
            .get("shardset_operator_reconciles_total")
            .copied()
            .unwrap_or_default();
        if done >= at_least {
            return Ok(metrics);
        }
        if Instant::now() > deadline {
            bail!("the operator reconciled only {done} times, expected {at_least}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_is_a_condition_and_costs_nothing() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("e2e-badtoken").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    let wrong = format!("{}x", fresh_token());
    stack.sweep_for(&wrong);
    put_token_secret(&ns, "wrong-token", &wrong)?;

    // Every pod the ShardSet ever gets, as the watch reports it.
    let pods_seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = {
        let seen = Arc::clone(&pods_seen);
        let api = ns.api::<Pod>();
        tokio::spawn(async move {
            let config = watcher::Config::default().labels("shardset.io/shardset=bot");
            let mut events = std::pin::pin!(watcher(api, config));
            while let Ok(Some(event)) = events.try_next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.push(p.name_any());
                }
            }
        })
    };

    // 1. The condition, with a message that names the Secret.
    let manifest = stack
        .shardset_yaml("bot", 4, 2, "")
        .replace(&format!("name: {TOKEN_SECRET},"), "name: wrong-token,");
    ensure!(manifest.contains("name: wrong-token,"), "{manifest}");
    ns.apply(&manifest)?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(120), |s| {
        has_condition(s, "Degraded", "True", "InvalidToken")
            && has_condition(s, "Ready", "False", "InvalidToken")
    })
    .await?;
    stack.remember("ShardSet", &ss);
    let message = condition(&ss, "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("Secret \"wrong-token\" key \"token\"") && message.contains("401"),
        "the condition should name the Secret and the 401: {message}"
    );
    report(&format!(
        "InvalidToken {:.1} s after install: {message}",
        started.elapsed().as_secs_f64()
    ));
    let events = ns.kubectl(&["get", "events", "--field-selector", "reason=InvalidToken"])?;
    ensure!(
        events.contains("Warning") && events.contains("shardset/bot"),
        "no InvalidToken Warning Event: {events}"
    );

    // 2. Reconciles keep coming (changes to the ShardSet trigger them at once); none creates a
    //    pod or asks Discord again about the same token.
    let first = stack.leader_metrics().await?;
    let base = first
        .get("shardset_operator_reconciles_total")
        .copied()
        .unwrap_or_default();
    for poke in 1..=3 {
        ns.kubectl(&[
            "annotate",
            "--overwrite",
            "shardset/bot",
            &format!("e2e.shardset.io/poke={poke}"),
        ])?;
        wait_reconciles(&stack, base + f64::from(poke)).await?;
    }
    let after = stack.leader_metrics().await?;
    ensure!(
        refused_calls(&after) == 1.0,
        "the operator should ask Discord about a refused token once, metrics say {}: {:?}",
        refused_calls(&after),
        after
            .iter()
            .filter(|(k, _)| k.contains("discord_requests"))
            .collect::<Vec<_>>()
    );
    let seen = pods_seen.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(
        seen.is_empty(),
        "pods were created for a refused token: {seen:?}"
    );
    let identifies = stack.fake.identifies().await?;
    let counters = stack.fake.raw("counters").await?;
    let counters: fake_discord::control::Counters = serde_json::from_str(&counters)?;
    ensure!(
        identifies.is_empty() && counters.connections_total == 0,
        "the refused token reached the gateway: {identifies:#?} {counters:#?}"
    );

    // 3. The right token in the same Secret: Ready without touching the ShardSet.
    let step = Instant::now();
    put_token_secret(&ns, "wrong-token", &stack.token)?;
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(180), |s| settled_at(s, 4)).await?;
    stack.remember("ShardSet", &ss);
    stack
        .fake
        .wait_layout_live(4, Duration::from_secs(60))
        .await?;
    report(&format!(
        "token fixed in the Secret: Ready {:.1} s later",
        step.elapsed().as_secs_f64()
    ));
    ensure!(
        stack.fake.identifies().await?.len() == 4,
        "expected one Identify per shard once the token is right"
    );
    stack
        .fake
        .assert_no_violations("after the token was fixed")
        .await?;
    recorder.abort();

    // 4. Neither token anywhere; no RBAC refusal.
    stack.snapshot("end")?;
    stack.finish().await?;
    report(&format!(
        "whole scenario {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
