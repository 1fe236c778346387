//! Scenario: the API server itself refuses bad ShardSets, each with a message a user understands
//! (the schema and the CEL rules of the generated CRD); `kubectl scale` is validated the same way.
//! No operator runs here: admission is the apiserver's job.

mod operator_support;

use operator_support::*;
use shardset_e2e::TestNamespace;

fn manifest(name: &str, spec: serde_json::Value) -> String {
    shardset_manifest(name, "http://fake.invalid/api", "redis://redis:6379/", spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shardsets_are_refused_with_clear_messages() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-validate").await else {
        return Ok(());
    };
    install_crd()?;

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "zero",
            manifest("zero", serde_json::json!({"shards": 0})),
            "spec.shards in body should be greater than or equal to 1",
        ),
        (
            "perpod",
            manifest(
                "perpod",
                serde_json::json!({"shards": 2, "shardsPerPod": 3}),
            ),
            "spec.shardsPerPod must not exceed spec.shards",
        ),
        (
            "perpod0",
            manifest(
                "perpod0",
                serde_json::json!({"shards": 2, "shardsPerPod": 0}),
            ),
            "spec.shardsPerPod in body should be greater than or equal to 1",
        ),
        (
            "neither",
            manifest("neither", serde_json::json!({})),
            "set exactly one of spec.shards",
        ),
        (
            "both",
            manifest("both", serde_json::json!({"shards": 2, "autoShards": {}})),
            "set exactly one of spec.shards",
        ),
        (
            "intents",
            manifest(
                "intents",
                serde_json::json!({"shards": 2, "intents": 131072}),
            ),
            "spec.intents must be a Discord intents bitfield",
        ),
        (
            "maxconc",
            manifest(
                "maxconc",
                serde_json::json!({"shards": 2, "maxConcurrency": 0}),
            ),
            "spec.maxConcurrency in body should be greater than or equal to 1",
        ),
        (
            "window",
            {
                let mut m: serde_json::Value =
                    serde_json::from_str(&manifest("window", serde_json::json!({"shards": 2})))?;
                m["spec"]["gateway"] = serde_json::json!({"identifyWindowMs": 100});
                m.to_string()
            },
            "identifyWindowMs below 5000 (Discord's Identify window) is only allowed together with spec.gateway.apiUrl",
        ),
        (
            "literal-token",
            manifest(
                "literal-token",
                serde_json::json!({"shards": 2, "pod": {"env": [{"name": "DISCORD_TOKEN", "value": "abc"}]}}),
            ),
            "spec.pod.env must not set the variables the operator sets itself",
        ),
        (
            "no-token-ref",
            {
                let mut m: serde_json::Value = serde_json::from_str(&manifest(
                    "no-token-ref",
                    serde_json::json!({"shards": 2}),
                ))?;
                m["spec"]
                    .as_object_mut()
                    .map(|s| s.remove("tokenSecretRef"));
                m.to_string()
            },
            "spec.tokenSecretRef: Required value",
        ),
        (
            "redis-scheme",
            {
                let mut m: serde_json::Value = serde_json::from_str(&manifest(
                    "redis-scheme",
                    serde_json::json!({"shards": 2}),
                ))?;
                m["spec"]["redis"]["url"] = "http://redis:6379".into();
                m.to_string()
            },
            "spec.redis.url in body should match",
        ),
        (
            "this-name-is-far-too-long-for-pod-names-to-fit",
            manifest(
                "this-name-is-far-too-long-for-pod-names-to-fit",
                serde_json::json!({"shards": 2}),
            ),
            "metadata.name must be at most 40 characters",
        ),
    ];
    for (name, yaml, expected) in &cases {
        let error = ns
            .apply(yaml)
            .expect_err(&format!("{name}: the apiserver accepted a bad ShardSet"));
        let text = format!("{error:#}");
        assert!(
            text.contains(expected),
            "{name}: expected {expected:?} in {text}"
        );
    }

    // A good one is accepted; scaling is validated by the same rules.
    ns.apply(&manifest(
        "good",
        serde_json::json!({"shards": 10, "shardsPerPod": 3}),
    ))?;
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
