//! Scenario: a ShardSet of 10 shards at 3 per pod on the real cluster.
//!
//! 1. `kubectl apply` → exactly 4 pods (0-2, 3-5, 6-8, 9-9), Ready, each with its range and the
//!    env contract (the token only by `secretKeyRef`), owned by the ShardSet, restricted.
//! 2. The status counts shards, pods and guilds (from shard records in a real Redis); `kubectl get
//!    shardsets` shows the columns and `kubectl describe` the conditions and Events.
//! 3. A deleted pod comes back (a new pod under the same name).
//! 4. A foreign pod wearing our labels, without an owner reference, is left alone.
//! 5. An owned pod outside the plan is removed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use redis::Commands;
use shardset_contract::{Keys, ShardState, ShardStatus};
use shardset_e2e::host::{Operator, Stage, TOKEN, fake_application_id};
use shardset_e2e::secrets::{TOKEN_SECRET, put_token};
use shardset_e2e::shardsets::{
    ShardSet, exactly_ready, has_condition, pod_range, wait_pods, wait_shardset,
};
use shardset_e2e::{TestNamespace, probe_pod};

const PODS: [&str; 4] = ["bot-10-0-2", "bot-10-3-5", "bot-10-6-8", "bot-10-9-9"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_shards_at_three_per_pod() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-pods").await else {
        return Ok(());
    };
    let stage = Stage::new(100).await?;
    // What workers would report: 10 shards of layout 10 holding 7 guilds each.
    let keys = Keys::new(fake_application_id());
    let mut conn = stage.redis.conn();
    for shard in 0..10 {
        let record = ShardStatus {
            state: ShardState::Ready,
            guilds: 7,
            pod: "x".into(),
            reason: None,
            updated_at_ms: 1,
            layout_revision: 0,
            lapses: 0,
            behind_ms: None,
            bus_accepting: None,
        };
        let _: () = conn.set(keys.status(10, shard), serde_json::to_string(&record)?)?;
    }
    put_token(&ns, TOKEN_SECRET, TOKEN).await?;
    let operator = Operator::start(&ns, "op-a", &[])?;

    // 1. Four pods with the right ranges and env.
    stage
        .shardset("bot")
        .shards(10)
        .per_pod(3)
        .intents(513)
        .apply(&ns)?;
    let pods = wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &PODS)
    })
    .await?;
    let ss = ns.api::<ShardSet>().get("bot").await?;
    let uid = ss.uid().unwrap_or_default();
    for pod in &pods {
        let name = pod.name_any();
        let (_, first, last) = pod_range(&name).context("a pod of a layout")?;
        let (first, last) = (first.to_string(), last.to_string());
        let spec = pod.spec.as_ref().context("pod spec")?;
        let env: BTreeMap<String, EnvVar> = spec.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let value = |k: &str| env.get(k).and_then(|e| e.value.clone()).unwrap_or_default();
        assert_eq!(value("SHARD_FIRST"), first, "{name}");
        assert_eq!(value("SHARD_LAST"), last, "{name}");
        assert_eq!(value("SHARD_TOTAL"), "10");
        assert_eq!(value("SHARDSET_LAYOUT"), "10");
        assert_eq!(value("SHARDSET_NAME"), "bot");
        assert_eq!(value("DISCORD_INTENTS"), "513");
        assert_eq!(value("DISCORD_API_URL"), stage.fake.api_url());
        assert_eq!(value("REDIS_URL"), stage.redis.url());
        let token = &env["DISCORD_TOKEN"];
        assert!(token.value.is_none(), "the token is never a literal");
        let key_ref = token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .context("DISCORD_TOKEN by secretKeyRef")?;
        assert_eq!(
            (key_ref.name.as_str(), key_ref.key.as_str()),
            ("bot-token", "token")
        );
        let labels = pod.labels();
        assert_eq!(labels["shardset.io/shardset"], "bot");
        assert_eq!(labels["shardset.io/layout"], "10");
        assert_eq!(labels["shardset.io/shard-first"], first);
        assert_eq!(labels["shardset.io/shard-last"], last);
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ShardSet", uid.as_str(), Some(true))
        );
        assert_eq!(spec.automount_service_account_token, Some(false));
        let sc = spec.containers[0]
            .security_context
            .as_ref()
            .context("security context")?;
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".into()])
        );
    }

    // 2. Status, columns, describe.
    let ss = wait_shardset(&ns, "bot", Duration::from_secs(60), |s| {
        has_condition(s, "Ready", "True", "AllShardsReady")
            && s.status.as_ref().is_some_and(|st| st.guilds == Some(70))
    })
    .await?;
    let status = ss.status.clone().unwrap_or_default();
    assert_eq!(
        (
            status.shards,
            status.ready_shards,
            status.pods,
            status.ready_pods
        ),
        (Some(10), 10, 4, 4)
    );
    assert_eq!(
        status.application_id,
        Some(fake_application_id().to_string())
    );
    assert_eq!(status.recommended_shards, Some(1));
    assert_eq!(status.max_concurrency, Some(1));
    assert_eq!(status.session_start_limit.map(|l| l.total), Some(1000));
    assert_eq!(status.observed_generation, ss.metadata.generation);

    let table = ns.kubectl(&["get", "shardsets"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "SHARDS", "READY", "PODS", "GUILDS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], ["bot", "10", "10", "4", "70"], "{table}");
    let wide = ns.kubectl(&["get", "shs", "-o", "wide"])?;
    assert!(wide.contains("AllShardsReady"), "{wide}");

    let described = ns.kubectl(&["describe", "shardset", "bot"])?;
    for needle in [
        "Conditions:",
        "AllShardsReady",
        "Progressing",
        "Degraded",
        "Events:",
        "PodsCreated",
    ] {
        assert!(
            described.contains(needle),
            "describe lacks {needle}:\n{described}"
        );
    }

    // 3. A deleted pod comes back.
    let pod_api = ns.api::<Pod>();
    let old_uid = pods
        .iter()
        .find(|p| p.name_any() == "bot-10-3-5")
        .and_then(|p| p.uid());
    pod_api
        .delete("bot-10-3-5", &DeleteParams::default())
        .await?;
    let pods = wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &PODS)
            && p.iter()
                .all(|p| p.name_any() != "bot-10-3-5" || p.uid() != old_uid)
    })
    .await?;
    assert_eq!(pods.len(), 4);

    // 4. A foreign pod with our labels and no owner stays.
    pod_api
        .create(&PostParams::default(), &labelled_probe("bot-foreign", 0, 9))
        .await?;

    // 5. An owned pod outside the plan goes.
    let mut stray = labelled_probe("bot-10-20-29", 20, 29);
    stray.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "shardset.io/v1alpha1".into(),
            kind: "ShardSet".into(),
            name: "bot".into(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    pod_api.create(&PostParams::default(), &stray).await?;
    wait_pods(&ns, "bot", Duration::from_secs(60), |p| {
        p.iter().all(|p| p.name_any() != "bot-10-20-29")
    })
    .await?;

    // The operator has looked at the foreign pod several times since, and left it.
    let since = operator.metrics().await?.reconciles();
    operator
        .wait_reconciles(since, 3.0, Duration::from_secs(60))
        .await?;
    let foreign = pod_api.get("bot-foreign").await?;
    assert!(
        foreign.metadata.deletion_timestamp.is_none(),
        "the foreign pod was left alone"
    );
    let pods = pod_api.list(&Default::default()).await?.items;
    let owned: Vec<String> = pods
        .iter()
        .filter(|p| p.owner_references().iter().any(|o| o.uid == uid))
        .map(|p| p.name_any())
        .collect();
    assert_eq!(owned.len(), 4, "{owned:?}");
    let events = ns.events_yaml();
    assert!(
        events.contains("PodsDeleted"),
        "a Normal Event for the removed pod"
    );
    assert!(
        !events.contains(TOKEN) && !operator.log().contains(TOKEN),
        "the token leaked"
    );
    stage.shutdown().await;
    Ok(())
}

/// A probe pod wearing the labels of ShardSet `bot`, layout 10, shards `first..=last`.
fn labelled_probe(name: &str, first: u32, last: u32) -> Pod {
    let mut pod = probe_pod(name, &[]);
    pod.metadata.labels = Some(BTreeMap::from([
        ("shardset.io/shardset".to_string(), "bot".to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "shardset-operator".to_string(),
        ),
        ("shardset.io/layout".to_string(), "10".to_string()),
        ("shardset.io/shard-first".to_string(), first.to_string()),
        ("shardset.io/shard-last".to_string(), last.to_string()),
    ]));
    pod
}
