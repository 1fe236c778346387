//! Reading what the bot's Redis needs from Secrets: the password (`spec.redis.secretRef`) and the
//! CA bundle (`spec.redis.tls.caSecretRef`, checked as the worker checks its `REDIS_CA_FILE`).
//! What is missing or unusable becomes a [`Problem`]; Redis is then not used this pass.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use shardset_contract::redis_tls::CaBundle;

use crate::crd::RedisSpec;
use crate::reconcile::dereference::DereferenceError;
use crate::reconcile::secrets::{SecretValue, read_secret_key};
use crate::status::Problem;

/// The Redis Secrets as read this pass.
#[derive(Debug, Default)]
pub struct RedisSecrets {
    /// The password, when `spec.redis.secretRef` is set and was read.
    pub password: Option<String>,
    /// The CA bundle, when `spec.redis.tls.caSecretRef` is set, was read and holds usable CAs.
    pub ca: Option<CaBundle>,
    /// Everything the spec names was read: Redis can be used.
    pub usable: bool,
}

/// Reads the Secrets `redis` names in `namespace`, adding a problem for each one missing.
pub async fn read(
    secrets: &Api<Secret>,
    namespace: &str,
    redis: &RedisSpec,
    problems: &mut Vec<Problem>,
) -> Result<RedisSecrets, DereferenceError> {
    let read = |name: &str, key: &str| {
        let name = name.to_owned();
        let key = key.to_owned();
        async move {
            read_secret_key(secrets, &name, &key)
                .await
                .map_err(|source| DereferenceError::ReadSecret { name, source })
        }
    };
    let mut usable = true;
    let password = match &redis.secret_ref {
        None => None,
        Some(r) => match read(&r.name, &r.key).await? {
            SecretValue::Found(password) => Some(password),
            missing => {
                usable = false;
                problems.push(Problem::RedisSecretMissing(missing.describe(
                    namespace,
                    &r.name,
                    &r.key,
                    "spec.redis.secretRef",
                    "the Redis password",
                )));
                None
            }
        },
    };
    let ca = match redis.tls.as_ref().map(|t| &t.ca_secret_ref) {
        None => None,
        Some(r) => {
            let found = read(&r.name, &r.key).await?;
            let checked = match found {
                SecretValue::Found(pem) => CaBundle::from_pem(
                    pem.into_bytes(),
                    &format!("Secret \"{}\" key \"{}\"", r.name, r.key),
                )
                .map_err(|e| format!("{e} (spec.redis.tls.caSecretRef)")),
                missing => Err(missing.describe(
                    namespace,
                    &r.name,
                    &r.key,
                    "spec.redis.tls.caSecretRef",
                    "the Redis CA certificates (PEM)",
                )),
            };
            match checked {
                Ok(ca) => Some(ca),
                Err(message) => {
                    usable = false;
                    problems.push(Problem::RedisSecretMissing(message));
                    None
                }
            }
        }
    };
    Ok(RedisSecrets {
        password,
        ca,
        usable,
    })
}
