//! The first step of a pass: what the ShardSet refers to and what it owns, read before anything
//! is decided. The token Secret (no pods without a token: they would crash-loop and could burn
//! the Identify budget) and the Redis password and CA Secrets ([`redis_secrets`]), Discord when a call is due (the bot's id
//! and `/gateway/bot`) and only at a REST base the token may go to ([`api_trust`]), and the pods
//! carrying the ShardSet's label (from the controller's pod store, [`crate::pod_cache`]). What is
//! missing or refused becomes a [`Problem`] for the status; only a failing API call is an error.
//!
//! The Secrets are read by name (a GET each, never a LIST) on every pass, not cached: a watch
//! would keep every Secret of the watched namespaces (Helm releases, other apps' credentials) in
//! the operator's memory and need `list`/`watch` on them all, and a Secret's change would still
//! wait for the next resync to be acted on. A GET is always fresh.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::Api;
use shardset_contract::token::Token;

use crate::api_trust;
use crate::apply;
use crate::context::Context;
use crate::crd::ShardSet;
use crate::discord::Lookup;
use crate::plan::ObservedPod;
use crate::pods;
use crate::reconcile::redis_secrets::{self, RedisSecrets};
use crate::reconcile::secrets::{SecretValue, read_secret_key};
use crate::redis_state::RedisTarget;
use crate::status::Problem;

/// Why the ShardSet's references or pods could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DereferenceError {
    #[error("cannot read Secret \"{name}\": {source}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot list the ShardSet's pods: {0}")]
    ListPods(#[source] kube::Error),
}

impl DereferenceError {
    /// A fixed label for `reconcile_failures_total`: an API call failed.
    pub fn metric_label(&self) -> &'static str {
        "kube"
    }
}

/// What the ShardSet refers to, as read this pass.
pub struct Dereferenced {
    /// The bot token; `None` when its Secret or key is missing or empty.
    pub token: Option<Token>,
    /// Where the token lives, for messages (`Secret "bot-token" key "token"`), never the token.
    pub token_desc: String,
    /// The Redis password and CA bundle, and whether Redis can be used (all it needs was read).
    pub redis: RedisSecrets,
    /// What is known from Discord (called only when a call is due).
    pub lookup: Lookup,
    /// The bot's id: from Discord, else from the last status.
    pub app_id: Option<u64>,
    /// What is missing or refused, in the order found.
    pub problems: Vec<Problem>,
}

impl Dereferenced {
    /// Where the bot's Redis is and how to reach it; `None` when a Secret it needs is missing.
    pub fn redis_target<'a>(&'a self, ss: &'a ShardSet) -> Option<RedisTarget<'a>> {
        self.redis.usable.then(|| RedisTarget {
            url: &ss.spec.redis.url,
            password: self.redis.password.as_deref(),
            ca: self.redis.ca.as_ref(),
        })
    }
}

/// The pods carrying the ShardSet's label, as listed and as the planners see them.
pub struct Pods {
    pub existing: Vec<Pod>,
    /// `existing`, in the same order, observed against the ShardSet's uid.
    pub observed: Vec<ObservedPod>,
}

/// Reads the Secrets and asks Discord when a call is due. `key` is `namespace/name`.
pub async fn dereference(
    ss: &ShardSet,
    namespace: &str,
    key: &str,
    ctx: &Context,
) -> Result<Dereferenced, DereferenceError> {
    let spec = &ss.spec;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let read = |name: String, secret_key: String| {
        let secrets = secrets.clone();
        async move {
            read_secret_key(&secrets, &name, &secret_key)
                .await
                .map_err(|source| DereferenceError::ReadSecret { name, source })
        }
    };
    let mut problems = Vec::new();

    let token_ref = &spec.token_secret_ref;
    let token_desc = format!("Secret \"{}\" key \"{}\"", token_ref.name, token_ref.key);
    let token = match read(token_ref.name.clone(), token_ref.key.clone()).await? {
        SecretValue::Found(raw) => {
            let token = Token::new(raw);
            if token.is_empty() {
                problems.push(Problem::TokenSecretMissing(format!(
                    "{token_desc} in namespace \"{namespace}\" is empty: put the bot token there"
                )));
                None
            } else {
                Some(token)
            }
        }
        missing => {
            problems.push(Problem::TokenSecretMissing(missing.describe(
                namespace,
                &token_ref.name,
                &token_ref.key,
                "spec.tokenSecretRef",
                "the bot token",
            )));
            None
        }
    };

    let redis = redis_secrets::read(&secrets, namespace, &spec.redis, &mut problems).await?;
    ctx.redis_secrets.keep(key, &redis);

    // Discord, when a call is due, and only at a base the token may go to.
    let trusted = api_trust::check(spec, &ctx.settings.trusted_api_hosts);
    if let Err(message) = &trusted {
        problems.push(Problem::UntrustedApiUrl(message.clone()));
    }
    let lookup = match &token {
        Some(token) if trusted.is_ok() => {
            ctx.discord
                .lookup(key, spec.api_url(), token, &token_desc)
                .await
        }
        _ => Lookup::default(),
    };
    if let Some(problem) = &lookup.problem {
        problems.push(problem.clone());
    }
    let app_id = lookup.app_id.or_else(|| {
        ss.status
            .as_ref()
            .and_then(|s| s.application_id.as_deref())
            .and_then(|id| id.parse().ok())
    });

    Ok(Dereferenced {
        token,
        token_desc,
        redis,
        lookup,
        app_id,
        problems,
    })
}

/// The pods carrying the ShardSet's label (ours, and foreign ones wearing it): from the
/// controller's pod store when it can be trusted for this ShardSet, else listed
/// ([`crate::pod_cache`] says why a stale store read is safe, and when it is not). `key` is
/// `namespace/name`.
pub async fn list_pods(
    ss: &ShardSet,
    namespace: &str,
    key: &str,
    ctx: &Context,
) -> Result<Pods, DereferenceError> {
    let name = ss.name_any();
    let existing = match ctx.pod_cache.shardset_pods(key, namespace, &name) {
        Some(cached) => cached,
        None => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
            apply::list_pods(&api, &name)
                .await
                .map_err(DereferenceError::ListPods)?
        }
    };
    let uid = ss.uid().unwrap_or_default();
    let observed = existing.iter().map(|p| pods::observe(p, &uid)).collect();
    Ok(Pods { existing, observed })
}
