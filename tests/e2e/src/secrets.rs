//! Bot tokens for a run and the Secrets that hold them (what a ShardSet's `tokenSecretRef` and the
//! fake Discord chart's `existingSecret` read).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;

use crate::TestNamespace;
use crate::random::random_u64;

/// The Secret holding the bot token, under the key `token`, in every scenario.
pub const TOKEN_SECRET: &str = "bot-token";

/// A token unique to this run: long, random, and easy to search for.
pub fn fresh_token() -> String {
    let [a, b, c] = [0, 1, 2].map(|i| format!("{:016x}", random_u64(i)));
    format!("e2e{a}.{b}.{c}")
}

/// Creates (or replaces) the Secret `name` with exactly `data`.
pub async fn put_secret(
    ns: &TestNamespace,
    name: &str,
    data: &[(&str, &str)],
) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))?;
    let api = ns.api::<Secret>();
    if api.get_opt(name).await?.is_some() {
        api.replace(name, &PostParams::default(), &secret).await?;
    } else {
        api.create(&PostParams::default(), &secret).await?;
    }
    Ok(())
}

/// Creates (or replaces) the Secret `name` holding `token` under the key `token`.
pub async fn put_token(ns: &TestNamespace, name: &str, token: &str) -> anyhow::Result<()> {
    put_secret(ns, name, &[("token", token)]).await
}
