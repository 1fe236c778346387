//! Reading what the bot's Redis needs from Secrets: the password (`spec.redis.secretRef`) and the
//! CA bundle (`spec.redis.tls.caSecretRef`, checked as the worker checks its `REDIS_CA_FILE`).
//! What is missing or unusable becomes a [`Problem`]; Redis is then not used this pass.
//! The last usable read of each ShardSet is remembered ([`Remembered`]) for its cleanup: deleting a
//! namespace deletes the Secrets beside the ShardSet, usually before its finalizer runs.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use shardset_contract::redis_tls::CaBundle;

use crate::crd::RedisSpec;
use crate::reconcile::dereference::DereferenceError;
use crate::reconcile::secrets::{SecretValue, read_secret_key};
use crate::status::Problem;

/// The Redis Secrets as read this pass. Its `Debug` never shows the password.
#[derive(Clone, Default)]
pub struct RedisSecrets {
    /// The password, when `spec.redis.secretRef` is set and was read.
    pub password: Option<String>,
    /// The CA bundle, when `spec.redis.tls.caSecretRef` is set, was read and holds usable CAs.
    pub ca: Option<CaBundle>,
    /// Everything the spec names was read: Redis can be used.
    pub usable: bool,
}

impl std::fmt::Debug for RedisSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSecrets")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("usable", &self.usable)
            .finish()
    }
}

/// The last usable [`RedisSecrets`] of each ShardSet (`namespace/name`), kept in memory only, so
/// that cleanup can still reach a password-protected Redis after the Secrets went first (a deleted
/// namespace). An operator restarted in between has none: cleanup then retries until its give-up.
#[derive(Default)]
pub struct Remembered {
    entries: Mutex<HashMap<String, RedisSecrets>>,
}

impl Remembered {
    /// Keeps `read` for `key` when it was usable.
    pub fn keep(&self, key: &str, read: &RedisSecrets) {
        if read.usable {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.insert(key.to_owned(), read.clone());
        }
    }

    /// `read` when usable, else the last usable read kept for `key`, else `read`.
    pub fn or_last(&self, key: &str, read: RedisSecrets) -> RedisSecrets {
        if read.usable {
            return read;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).cloned().unwrap_or(read)
    }

    /// Drops what was kept for a deleted ShardSet.
    pub fn forget(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(password: Option<&str>, usable: bool) -> RedisSecrets {
        RedisSecrets {
            password: password.map(str::to_owned),
            ca: None,
            usable,
        }
    }

    #[test]
    fn a_missing_secret_falls_back_to_the_last_usable_read() {
        let kept = Remembered::default();
        kept.keep("ns/bot", &read(Some("first"), true));
        kept.keep("ns/bot", &read(None, false));
        let recalled = kept.or_last("ns/bot", read(None, false));
        assert!(recalled.usable);
        assert_eq!(recalled.password.as_deref(), Some("first"));
        assert_eq!(
            kept.or_last("ns/bot", read(Some("second"), true))
                .password
                .as_deref(),
            Some("second"),
            "a usable read wins over what was kept"
        );
        assert!(!kept.or_last("ns/other", read(None, false)).usable);
        kept.forget("ns/bot");
        assert!(!kept.or_last("ns/bot", read(None, false)).usable);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let text = format!("{:?}", read(Some("hunter2"), true));
        assert!(!text.contains("hunter2"), "{text}");
    }
}
