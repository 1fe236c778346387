//! Reading one key of a Secret in the ShardSet's namespace (the bot token, the Redis password):
//! the value, or exactly what is missing, in a message that says what to create or add. Only a
//! failing API call is an error; a missing Secret or key is a value the status reports.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// A Secret key's value, or what is missing.
pub enum SecretValue {
    Found(String),
    SecretMissing,
    /// The Secret exists without the key. Its other keys are not kept: they would end up in a
    /// status anyone who may read the ShardSet can read (issue 11, item 18).
    KeyMissing,
    NotUtf8,
}

impl SecretValue {
    /// A message that names exactly what is missing and what to do.
    pub fn describe(
        &self,
        namespace: &str,
        secret: &str,
        key: &str,
        field: &str,
        what: &str,
    ) -> String {
        match self {
            Self::Found(_) => String::new(),
            Self::SecretMissing => format!(
                "Secret \"{secret}\" not found in namespace \"{namespace}\" ({field}): create it with {what} under key \"{key}\""
            ),
            Self::KeyMissing => format!(
                "Secret \"{secret}\" in namespace \"{namespace}\" has no key \"{key}\" ({field}): add {what} under that key or set {field}.key"
            ),
            Self::NotUtf8 => format!(
                "Secret \"{secret}\" key \"{key}\" in namespace \"{namespace}\" is not UTF-8 text ({field})"
            ),
        }
    }
}

/// Reads one key of a Secret. Only a failing API call is an error; absence is a value.
pub async fn read_secret_key(
    api: &Api<Secret>,
    name: &str,
    key: &str,
) -> Result<SecretValue, kube::Error> {
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(SecretValue::SecretMissing);
    };
    // `stringData` is write-only; the API server folds it into `data`.
    Ok(match secret.data.unwrap_or_default().remove(key) {
        Some(bytes) => match String::from_utf8(bytes.0) {
            Ok(value) => SecretValue::Found(value),
            Err(_) => SecretValue::NotUtf8,
        },
        None => SecretValue::KeyMissing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_secrets_are_described_exactly() {
        let m = SecretValue::SecretMissing.describe(
            "ns",
            "bot-token",
            "token",
            "spec.tokenSecretRef",
            "the bot token",
        );
        assert_eq!(
            m,
            "Secret \"bot-token\" not found in namespace \"ns\" (spec.tokenSecretRef): create it with the bot token under key \"token\""
        );
        let m = SecretValue::KeyMissing.describe(
            "ns",
            "bot-token",
            "token",
            "spec.tokenSecretRef",
            "the bot token",
        );
        assert_eq!(
            m,
            "Secret \"bot-token\" in namespace \"ns\" has no key \"token\" (spec.tokenSecretRef): add the bot token under that key or set spec.tokenSecretRef.key"
        );
        // The Secret's other keys are not listed: a status is readable by whoever may read the
        // ShardSet, who need not be allowed to read the Secret (issue 11, item 18).
        assert!(!m.contains("tok,") && !m.contains("(it has"), "{m}");
    }
}
