//! ShardSet manifests for the scenarios, chainable: a stack gives one with its defaults (image,
//! token Secret, Redis, fake Discord), the scenario adds what its story needs, then applies it
//! (`kubectl apply`, as a user would).
//!
//! ```
//! use shardset_e2e::manifest::ShardSetManifest;
//!
//! let bot = ShardSetManifest::new("bot", "shardset/shard-worker:dev")
//!     .shards(16)
//!     .per_pod(4)
//!     .replying()
//!     .handover_window_ms(4_000);
//! assert_eq!(bot.value()["spec"]["handover"]["windowMs"], 4_000);
//! ```

use std::fmt;

use serde_json::{Value, json};

use crate::TestNamespace;
use crate::secrets::TOKEN_SECRET;

/// A ShardSet manifest (JSON, which `kubectl apply` takes as YAML).
#[derive(Debug, Clone)]
pub struct ShardSetManifest(Value);

impl ShardSetManifest {
    /// The ShardSet `name` running `image` (never pulled: `make images` loaded it), its token in
    /// the Secret [`TOKEN_SECRET`] under `token`.
    pub fn new(name: &str, image: &str) -> Self {
        Self(json!({
            "apiVersion": "shardset.io/v1alpha1",
            "kind": "ShardSet",
            "metadata": {"name": name},
            "spec": {
                "image": image,
                "tokenSecretRef": {"name": TOKEN_SECRET, "key": "token"},
                "pod": {"imagePullPolicy": "Never"},
            },
        }))
    }

    /// Sets `spec.<path>` (creating the objects on the way) to `value`.
    fn set(mut self, path: &[&str], value: Value) -> Self {
        let mut at = &mut self.0["spec"];
        for key in path {
            at = &mut at[*key];
        }
        *at = value;
        self
    }

    /// `spec.shards`.
    pub fn shards(self, shards: u32) -> Self {
        self.set(&["shards"], json!(shards))
    }

    /// `spec.shardsPerPod`.
    pub fn per_pod(self, per_pod: u32) -> Self {
        self.set(&["shardsPerPod"], json!(per_pod))
    }

    /// `spec.intents`.
    pub fn intents(self, intents: u64) -> Self {
        self.set(&["intents"], json!(intents))
    }

    /// `spec.redis.url`.
    pub fn redis_url(self, url: &str) -> Self {
        self.set(&["redis", "url"], json!(url))
    }

    /// `spec.redis.secretRef.name` (the key stays `password`): the Redis password's Secret.
    pub fn redis_secret(self, name: &str) -> Self {
        self.set(&["redis", "secretRef", "name"], json!(name))
    }

    /// `spec.redis.tls.caSecretRef.name` (the key stays `ca.crt`): the CA the Redis server's
    /// certificate is checked against.
    pub fn redis_ca_secret(self, name: &str) -> Self {
        self.set(&["redis", "tls", "caSecretRef", "name"], json!(name))
    }

    /// `spec.gateway.apiUrl`: where the workers and the operator find Discord (the fake).
    pub fn api_url(self, url: &str) -> Self {
        self.set(&["gateway", "apiUrl"], json!(url))
    }

    /// `spec.gateway.identifyWindowMs` (the fake's window, below Discord's 5 s).
    pub fn identify_window_ms(self, ms: u32) -> Self {
        self.set(&["gateway", "identifyWindowMs"], json!(ms))
    }

    /// `spec.tokenSecretRef.name` (the key stays `token`).
    pub fn token_secret(self, name: &str) -> Self {
        self.set(&["tokenSecretRef", "name"], json!(name))
    }

    /// `spec.handover.windowMs`: `W`, which a BlueGreen hand-over waits three times.
    pub fn handover_window_ms(self, ms: u32) -> Self {
        self.set(&["handover", "windowMs"], json!(ms))
    }

    /// `spec.reshardStrategy` (`BlueGreen`, the default, or `Recreate`).
    pub fn reshard_strategy(self, strategy: &str) -> Self {
        self.set(&["reshardStrategy"], json!(strategy))
    }

    /// One more variable in the worker's env (`spec.pod.env`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        let env = &mut self.0["spec"]["pod"]["env"];
        if !env.is_array() {
            *env = json!([]);
        }
        if let Some(list) = env.as_array_mut() {
            list.push(json!({"name": name, "value": value}));
        }
        self
    }

    /// Workers that answer every message they act on (`REPLY_TO_MESSAGES`), so the fake's reply
    /// log shows which messages were acted on, and how often.
    pub fn replying(self) -> Self {
        self.env("REPLY_TO_MESSAGES", "true")
    }

    /// `spec.pod.<key>` (affinity, labels, ...).
    pub fn pod(self, key: &str, value: Value) -> Self {
        self.set(&["pod", key], value)
    }

    /// Each top-level key of `spec` replaces the one here (a shallow merge: `{"pod": ...}`
    /// replaces the whole pod template).
    pub fn spec(mut self, spec: Value) -> Self {
        if let (Some(target), Some(extra)) = (self.0["spec"].as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                target.insert(k.clone(), v.clone());
            }
        }
        self
    }

    /// Without `spec.<key>` (for manifests the API server must refuse).
    pub fn without(mut self, key: &str) -> Self {
        if let Some(spec) = self.0["spec"].as_object_mut() {
            spec.remove(key);
        }
        self
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.0["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The manifest as JSON.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// `kubectl apply` of this manifest in `ns`.
    pub fn apply(&self, ns: &TestNamespace) -> anyhow::Result<String> {
        ns.apply(&self.to_string())
    }
}

impl fmt::Display for ShardSetManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_fields_land_where_the_crd_has_them() {
        let m = ShardSetManifest::new("bot", "img")
            .shards(8)
            .per_pod(2)
            .redis_url("redis://r:6379")
            .api_url("http://fake:8080/api")
            .identify_window_ms(500)
            .replying()
            .env("A", "b")
            .reshard_strategy("Recreate")
            .token_secret("wrong-token");
        let spec = &m.value()["spec"];
        assert_eq!(spec["shards"], 8);
        assert_eq!(spec["shardsPerPod"], 2);
        assert_eq!(spec["redis"]["url"], "redis://r:6379");
        assert_eq!(spec["gateway"]["apiUrl"], "http://fake:8080/api");
        assert_eq!(spec["gateway"]["identifyWindowMs"], 500);
        assert_eq!(spec["pod"]["imagePullPolicy"], "Never");
        assert_eq!(
            spec["pod"]["env"],
            json!([{"name": "REPLY_TO_MESSAGES", "value": "true"}, {"name": "A", "value": "b"}])
        );
        assert_eq!(spec["reshardStrategy"], "Recreate");
        assert_eq!(
            spec["tokenSecretRef"],
            json!({"name": "wrong-token", "key": "token"})
        );
    }

    #[test]
    fn spec_merges_top_level_keys_and_without_removes_one() {
        let m = ShardSetManifest::new("bot", "img")
            .api_url("http://fake/api")
            .spec(json!({"shards": 2, "gateway": {"identifyWindowMs": 100}}))
            .without("tokenSecretRef");
        let spec = &m.value()["spec"];
        assert_eq!(spec["shards"], 2);
        assert_eq!(spec["gateway"], json!({"identifyWindowMs": 100}));
        assert!(spec.get("tokenSecretRef").is_none());
        assert!(m.to_string().starts_with('{'));
    }
}
