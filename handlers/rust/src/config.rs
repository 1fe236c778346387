//! What a handler replica needs to know, from code or from the environment. The stream's layout
//! (subject prefix, partition count) is not configured: it is read from the stream's metadata,
//! where the publishing side wrote it (`docs/bus-protocol.md`, "Stream").

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use shardset_contract::bus;

/// The names the worker reads too (the contract's `env`): `NATS_URL` (several, comma-separated;
/// credentials may be in the URL), `NATS_USER` with `NATS_PASSWORD`, or `NATS_TOKEN` (never
/// logged), `SHARDSET_STREAM` (the bot's stream), `SHARDSET_LEASE_TTL_MS`.
pub use shardset_contract::env::{
    NATS_PASSWORD, NATS_TOKEN, NATS_URL, NATS_USER, SHARDSET_LEASE_TTL_MS, SHARDSET_STREAM,
};
/// The handler group: replicas of one group share the partitions; every group gets every event.
pub const SHARDSET_HANDLER_GROUP: &str = "SHARDSET_HANDLER_GROUP";
/// This replica's name in its group (default: `$POD_NAME` or `$HOSTNAME`, plus a random suffix).
pub const SHARDSET_HANDLER_REPLICA: &str = "SHARDSET_HANDLER_REPLICA";
/// Deliveries of an event whose handler keeps failing before it is terminated.
pub const SHARDSET_HANDLER_MAX_ATTEMPTS: &str = "SHARDSET_HANDLER_MAX_ATTEMPTS";

/// How a replica connects and behaves.
#[derive(Clone)]
pub struct Config {
    pub nats_url: String,
    pub auth: Auth,
    pub stream: String,
    pub group: String,
    pub replica: String,
    /// The lease TTL (and consumers' `ack_wait`) when this replica creates the bucket or a
    /// consumer; otherwise the existing bucket's `max_age` wins.
    pub lease_ttl: Duration,
    /// Deliveries of an event whose handler fails before it is terminated (logged, counted).
    pub max_attempts: u64,
    /// The first redelivery delay after a failure; doubles per attempt up to 30 s.
    pub retry_delay: Duration,
    /// How long one pull waits for an event: also the most a stopping partition waits.
    pub fetch_expires: Duration,
    /// How long a command waits for the worker's reply.
    pub command_timeout: Duration,
    /// How often an owned partition's backlog (pending messages, lag) is read for the metrics:
    /// two JetStream API requests per partition each time.
    pub backlog_every: Duration,
}

/// Credentials besides those in the URL.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
    /// A NATS credentials file (a user JWT and its NKey seed), e.g. mounted from a Secret.
    CredsFile(PathBuf),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::UserPassword(..) => f.write_str("UserPassword(<redacted>)"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            // The path is no secret; the file's content is.
            Self::CredsFile(path) => write!(f, "CredsFile({})", path.display()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: only its host part is shown.
        let host = self
            .nats_url
            .rsplit_once('@')
            .map_or(self.nats_url.as_str(), |(_, host)| host);
        f.debug_struct("Config")
            .field("nats_url", &host)
            .field("auth", &self.auth)
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("replica", &self.replica)
            .field("lease_ttl", &self.lease_ttl)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A setting is missing or invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        reason: &'static str,
    },
}

impl Config {
    /// Defaults for `stream` at `nats_url`: group `default`, a generated replica name.
    pub fn new(nats_url: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            auth: Auth::None,
            stream: stream.into(),
            group: bus::DEFAULT_GROUP.to_owned(),
            replica: generated_replica(None),
            lease_ttl: bus::DEFAULT_LEASE_TTL,
            max_attempts: 5,
            retry_delay: Duration::from_secs(1),
            fetch_expires: Duration::from_secs(1),
            command_timeout: Duration::from_secs(10),
            backlog_every: Duration::from_secs(5),
        }
    }

    /// From the process environment (the names above).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any lookup of the names above.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.is_empty());
        let url = get(NATS_URL).ok_or(ConfigError::Missing(NATS_URL))?;
        let stream = get(SHARDSET_STREAM).ok_or(ConfigError::Missing(SHARDSET_STREAM))?;
        let mut config = Self::new(url, stream);
        config.auth = match (get(NATS_USER), get(NATS_PASSWORD), get(NATS_TOKEN)) {
            (Some(user), Some(password), _) => Auth::UserPassword(user, password),
            (_, _, Some(token)) => Auth::Token(token),
            (None, None, None) => Auth::None,
            _ => {
                return Err(ConfigError::Invalid {
                    name: NATS_USER,
                    reason: "NATS_USER and NATS_PASSWORD go together",
                });
            }
        };
        if let Some(group) = get(SHARDSET_HANDLER_GROUP) {
            config.group = group;
        }
        config.replica = match get(SHARDSET_HANDLER_REPLICA) {
            Some(replica) => replica,
            None => generated_replica(get("POD_NAME").or_else(|| get("HOSTNAME"))),
        };
        if let Some(ms) = get(SHARDSET_LEASE_TTL_MS) {
            let ms: u64 = ms.parse().map_err(|_| ConfigError::Invalid {
                name: SHARDSET_LEASE_TTL_MS,
                reason: "not a number of milliseconds",
            })?;
            config.lease_ttl = Duration::from_millis(ms);
        }
        if let Some(n) = get(SHARDSET_HANDLER_MAX_ATTEMPTS) {
            config.max_attempts = n.parse().map_err(|_| ConfigError::Invalid {
                name: SHARDSET_HANDLER_MAX_ATTEMPTS,
                reason: "not a number",
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the names and durations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !bus::valid_name(&self.group) {
            return Err(ConfigError::Invalid {
                name: SHARDSET_HANDLER_GROUP,
                reason: "1 to 100 of A-Z a-z 0-9 _ -",
            });
        }
        if !bus::valid_name(&self.replica) {
            return Err(ConfigError::Invalid {
                name: SHARDSET_HANDLER_REPLICA,
                reason: "1 to 100 of A-Z a-z 0-9 _ -",
            });
        }
        if self.lease_ttl < Duration::from_millis(300) {
            return Err(ConfigError::Invalid {
                name: SHARDSET_LEASE_TTL_MS,
                reason: "at least 300 ms",
            });
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::Invalid {
                name: SHARDSET_HANDLER_MAX_ATTEMPTS,
                reason: "at least 1",
            });
        }
        Ok(())
    }
}

/// `<base>-<8 hex>`: unique per process, so a restarted pod never mistakes its predecessor's
/// leases for its own. `base` is made a valid name (other characters become `-`).
fn generated_replica(base: Option<String>) -> String {
    let base: String = base
        .unwrap_or_else(|| "handler".to_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    format!("{base}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_the_environment_with_defaults() {
        let config = Config::from_lookup(lookup(&[
            (NATS_URL, "nats://u:secret@nats:4222"),
            (SHARDSET_STREAM, "shardset-ns-bot"),
            ("POD_NAME", "demo-handler-7f9c"),
        ]))
        .expect("valid");
        assert_eq!(config.group, "default");
        assert!(config.replica.starts_with("demo-handler-7f9c-"));
        assert_eq!(config.lease_ttl, Duration::from_secs(10));
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn reads_credentials_and_overrides() {
        let config = Config::from_lookup(lookup(&[
            (NATS_URL, "nats://nats:4222"),
            (SHARDSET_STREAM, "s"),
            (NATS_USER, "u"),
            (NATS_PASSWORD, "hunter2"),
            (SHARDSET_HANDLER_GROUP, "replies"),
            (SHARDSET_HANDLER_REPLICA, "r1"),
            (SHARDSET_LEASE_TTL_MS, "2000"),
            (SHARDSET_HANDLER_MAX_ATTEMPTS, "3"),
        ]))
        .expect("valid");
        assert!(matches!(config.auth, Auth::UserPassword(..)));
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            (config.group.as_str(), config.replica.as_str()),
            ("replies", "r1")
        );
        assert_eq!(config.lease_ttl, Duration::from_secs(2));
        assert_eq!(config.max_attempts, 3);
    }

    #[test]
    fn refuses_missing_and_invalid_settings() {
        assert!(matches!(
            Config::from_lookup(lookup(&[(NATS_URL, "nats://x")])),
            Err(ConfigError::Missing(SHARDSET_STREAM))
        ));
        let bad_group = Config::from_lookup(lookup(&[
            (NATS_URL, "nats://x"),
            (SHARDSET_STREAM, "s"),
            (SHARDSET_HANDLER_GROUP, "a.b"),
        ]));
        assert!(matches!(bad_group, Err(ConfigError::Invalid { .. })));
        let half_credentials = Config::from_lookup(lookup(&[
            (NATS_URL, "nats://x"),
            (SHARDSET_STREAM, "s"),
            (NATS_USER, "u"),
        ]));
        assert!(half_credentials.is_err());
    }

    #[test]
    fn a_hostname_becomes_a_valid_replica_name() {
        let name = generated_replica(Some("host.example.com".into()));
        assert!(bus::valid_name(&name), "{name}");
        assert!(name.starts_with("host-example-com-"));
    }
}
