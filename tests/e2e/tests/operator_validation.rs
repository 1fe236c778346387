//! Scenario: the API server itself refuses bad ShardSets, each with a message a user understands
//! (the schema and the CEL rules of the generated CRD); `kubectl scale` is validated the same way.
//! No operator runs here: admission is the apiserver's job.

use serde_json::json;
use shardset_e2e::host::WORKER_IMAGE;
use shardset_e2e::manifest::ShardSetManifest;
use shardset_e2e::{TestNamespace, install_crd};

/// A ShardSet with everything but the shard count, pointing at a Discord and a Redis that need not
/// exist: the API server judges the manifest alone.
fn manifest(name: &str) -> ShardSetManifest {
    ShardSetManifest::new(name, WORKER_IMAGE)
        .api_url("http://fake.invalid/api")
        .redis_url("redis://redis:6379/")
}

/// What a case changes in [`manifest`].
type Change = fn(ShardSetManifest) -> ShardSetManifest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shardsets_are_refused_with_clear_messages() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-validate").await else {
        return Ok(());
    };
    install_crd()?;

    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "zero",
            |m| m.shards(0),
            "spec.shards in body should be greater than or equal to 1",
        ),
        (
            "perpod",
            |m| m.shards(2).per_pod(3),
            "spec.shardsPerPod must not exceed spec.shards",
        ),
        (
            "perpod0",
            |m| m.shards(2).per_pod(0),
            "spec.shardsPerPod in body should be greater than or equal to 1",
        ),
        ("neither", |m| m, "set exactly one of spec.shards"),
        (
            "both",
            |m| m.shards(2).spec(json!({"autoShards": {}})),
            "set exactly one of spec.shards",
        ),
        (
            "intents",
            |m| m.shards(2).intents(131072),
            "spec.intents must be a Discord intents bitfield",
        ),
        (
            "maxconc",
            |m| m.shards(2).spec(json!({"maxConcurrency": 0})),
            "spec.maxConcurrency in body should be greater than or equal to 1",
        ),
        (
            "window",
            // The whole `gateway`, without `apiUrl`.
            |m| {
                m.shards(2)
                    .spec(json!({"gateway": {"identifyWindowMs": 100}}))
            },
            "identifyWindowMs below 5000 (Discord's Identify window) is only allowed together with spec.gateway.apiUrl",
        ),
        (
            "literal-token",
            |m| m.shards(2).env("DISCORD_TOKEN", "abc"),
            "spec.pod.env must not set the variables the operator sets itself",
        ),
        (
            "no-token-ref",
            |m| m.shards(2).without("tokenSecretRef"),
            "spec.tokenSecretRef: Required value",
        ),
        (
            "redis-scheme",
            |m| m.shards(2).redis_url("http://redis:6379"),
            "spec.redis.url in body should match",
        ),
        (
            "this-name-is-far-too-long-for-pod-names-to-fit",
            |m| m.shards(2),
            "metadata.name must be at most 40 characters",
        ),
    ];
    for (name, change, expected) in cases {
        let error = change(manifest(name))
            .apply(&ns)
            .expect_err(&format!("{name}: the apiserver accepted a bad ShardSet"));
        let text = format!("{error:#}");
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in {text}"
        );
    }

    // A good one is accepted; scaling is validated by the same rules.
    manifest("good").shards(10).per_pod(3).apply(&ns)?;
    let zero = ns
        .kubectl(&["scale", "shardset", "good", "--replicas=0"])
        .expect_err("scale to 0");
    assert!(
        format!("{zero:#}").contains("greater than or equal to 1"),
        "{zero:#}"
    );
    let below = ns
        .kubectl(&["scale", "shardset", "good", "--replicas=2"])
        .expect_err("below shardsPerPod");
    assert!(
        format!("{below:#}").contains("spec.shardsPerPod must not exceed spec.shards"),
        "{below:#}"
    );
    ns.kubectl(&["scale", "shardset", "good", "--replicas=12"])?;
    let shards = ns.kubectl(&["get", "shardset", "good", "-o", "jsonpath={.spec.shards}"])?;
    assert_eq!(shards.trim(), "12");
    Ok(())
}
