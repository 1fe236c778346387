//! The bus settings of a worker: the pod env (`shardset_contract::env`, documented in
//! `docs/bus-protocol.md`, "Publisher configuration"), each with a flag of the same meaning. The
//! secrets (`NATS_PASSWORD`, `NATS_TOKEN`) are env only and not part of them:
//! [`crate::worker::Builder`] reads those. Unset `NATS_URL`: no bus.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use shardset_contract::{bus, env};

use super::jetstream::setup::StreamLimits;
use super::room::Limits;

/// How (and whether) the worker publishes to the bus.
#[derive(Debug, Clone, Args)]
pub struct BusSettings {
    /// Publish every dispatch to NATS JetStream at this URL (several comma-separated).
    #[arg(long, env = env::NATS_URL)]
    pub nats_url: Option<String>,
    /// NATS user (the password is env-only: NATS_PASSWORD).
    #[arg(long, env = env::NATS_USER)]
    pub nats_user: Option<String>,
    /// A NATS credentials file (user JWT and NKey seed).
    #[arg(long, env = env::NATS_CREDS_FILE)]
    pub nats_creds_file: Option<PathBuf>,
    /// The bot's stream (required with --nats-url).
    #[arg(long = "bus-stream", env = env::SHARDSET_STREAM)]
    pub stream: Option<String>,
    /// The subject prefix S (required with --nats-url).
    #[arg(long = "bus-subject-prefix", env = env::SHARDSET_SUBJECT_PREFIX)]
    pub subject_prefix: Option<String>,
    /// Guild partitions P (must match the stream's metadata).
    #[arg(long = "bus-partitions", env = env::SHARDSET_PARTITIONS, default_value_t = bus::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Create the stream, its consumers and the handlers' bucket when missing.
    #[arg(long = "bus-create-stream", env = env::SHARDSET_BUS_CREATE_STREAM, default_value_t = true, action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub create_stream: bool,
    /// Handler groups whose consumers the stream's creator makes (comma-separated).
    #[arg(long = "bus-groups", env = env::SHARDSET_BUS_GROUPS, value_delimiter = ',', default_value = bus::DEFAULT_GROUP)]
    pub groups: Vec<String>,
    /// Lease TTL in ms: the handlers' bucket max_age and the consumers' ack_wait, if created here.
    #[arg(long = "bus-lease-ttl-ms", env = env::SHARDSET_LEASE_TTL_MS, default_value_t = bus::DEFAULT_LEASE_TTL.as_millis() as u64)]
    pub lease_ttl_ms: u64,
    /// The stream's max_bytes (default unlimited).
    #[arg(long = "bus-max-bytes", env = env::SHARDSET_BUS_MAX_BYTES)]
    pub max_bytes: Option<i64>,
    /// The stream's max_msgs (default unlimited).
    #[arg(long = "bus-max-messages", env = env::SHARDSET_BUS_MAX_MESSAGES)]
    pub max_messages: Option<i64>,
    /// The stream's max_age in ms (default unlimited).
    #[arg(long = "bus-max-age-ms", env = env::SHARDSET_BUS_MAX_AGE_MS)]
    pub max_age_ms: Option<u64>,
    /// The stream's replicas.
    #[arg(long = "bus-replicas", env = env::SHARDSET_BUS_REPLICAS, default_value_t = 1)]
    pub replicas: usize,
    /// The stream's duplicate window in ms.
    #[arg(long = "bus-duplicate-window-ms", env = env::SHARDSET_BUS_DUPLICATE_WINDOW_MS, default_value_t = bus::DEFAULT_DUPLICATE_WINDOW.as_millis() as u64)]
    pub duplicate_window_ms: u64,
    /// Dispatches in flight to the bus, at most, in this process.
    #[arg(long = "bus-max-in-flight", env = env::SHARDSET_BUS_MAX_IN_FLIGHT, default_value_t = 4_096)]
    pub max_in_flight: usize,
    /// Payload bytes in flight to the bus, at most, in this process.
    #[arg(long = "bus-max-in-flight-bytes", env = env::SHARDSET_BUS_MAX_IN_FLIGHT_BYTES, default_value_t = 64 << 20)]
    pub max_in_flight_bytes: usize,
    /// Dispatches in flight to the bus, at most, per shard.
    #[arg(long = "bus-shard-max-in-flight", env = env::SHARDSET_BUS_SHARD_MAX_IN_FLIGHT, default_value_t = 1_024)]
    pub shard_max_in_flight: usize,
}

/// The bus settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct BusSettingsError {
    pub name: &'static str,
    pub reason: &'static str,
}

/// Where to publish, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusTarget {
    pub nats_url: String,
    pub stream: String,
    pub prefix: String,
    pub partitions: u32,
    pub groups: Vec<String>,
    pub lease_ttl: Duration,
    pub duplicate_window: Duration,
}

impl BusSettings {
    /// The bus to publish to; `Ok(None)` without `NATS_URL`.
    pub fn target(&self) -> Result<Option<BusTarget>, BusSettingsError> {
        let Some(nats_url) = self.nats_url.clone().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let invalid = |name, reason| BusSettingsError { name, reason };
        let stream = self
            .stream
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(invalid(env::SHARDSET_STREAM, "required with NATS_URL"))?;
        if stream.contains(['.', '*', '>', ' ']) {
            return Err(invalid(
                env::SHARDSET_STREAM,
                "a stream name may not hold '.', '*', '>' or spaces",
            ));
        }
        let prefix = self
            .subject_prefix
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or(invalid(
                env::SHARDSET_SUBJECT_PREFIX,
                "required with NATS_URL",
            ))?;
        if prefix.contains(['*', '>', ' ']) || prefix.starts_with('.') || prefix.ends_with('.') {
            return Err(invalid(
                env::SHARDSET_SUBJECT_PREFIX,
                "subject tokens separated by single dots, without wildcards or spaces",
            ));
        }
        if self.partitions == 0 {
            return Err(invalid(env::SHARDSET_PARTITIONS, "at least 1"));
        }
        let mut groups = self.groups.clone();
        groups.retain(|g| !g.trim().is_empty());
        if !groups.iter().all(|g| bus::valid_name(g)) {
            return Err(invalid(
                env::SHARDSET_BUS_GROUPS,
                "1 to 100 of A-Z a-z 0-9 _ -",
            ));
        }
        if self.lease_ttl_ms < 300 {
            return Err(invalid(env::SHARDSET_LEASE_TTL_MS, "at least 300 ms"));
        }
        if self.max_in_flight == 0 || self.shard_max_in_flight == 0 || self.max_in_flight_bytes == 0
        {
            return Err(invalid(
                env::SHARDSET_BUS_MAX_IN_FLIGHT,
                "the in-flight bounds must be at least 1",
            ));
        }
        Ok(Some(BusTarget {
            nats_url,
            stream,
            prefix,
            partitions: self.partitions,
            groups,
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            duplicate_window: Duration::from_millis(self.duplicate_window_ms),
        }))
    }

    /// The stream's limits, when the worker creates or updates it.
    pub fn stream_limits(&self) -> StreamLimits {
        StreamLimits {
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
            max_age: self.max_age_ms.map(Duration::from_millis),
            replicas: self.replicas,
        }
    }

    /// The in-flight bounds.
    pub fn limits(&self) -> Limits {
        Limits {
            messages: self.max_in_flight,
            bytes: self.max_in_flight_bytes,
            shard_messages: self.shard_max_in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        bus: BusSettings,
    }

    fn parse(args: &[&str]) -> BusSettings {
        let mut all = vec!["w"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).expect("flags").bus
    }

    #[test]
    fn no_url_no_bus_and_the_defaults_of_the_protocol() {
        let settings = parse(&[]);
        assert_eq!(settings.target(), Ok(None));
        assert!(settings.create_stream);
        assert_eq!(settings.groups, ["default"]);
        let target = parse(&[
            "--nats-url=nats://n:4222",
            "--bus-stream=shardset-ns-bot",
            "--bus-subject-prefix=shardset.ns.bot",
        ])
        .target()
        .expect("valid")
        .expect("a bus");
        assert_eq!(target.partitions, 16);
        assert_eq!(target.lease_ttl, Duration::from_secs(10));
        assert_eq!(target.duplicate_window, Duration::from_secs(120));
    }

    #[test]
    fn the_stream_and_prefix_are_required_and_checked() {
        let missing = parse(&["--nats-url=nats://n:4222"]).target();
        assert_eq!(missing.expect_err("no stream").name, env::SHARDSET_STREAM);
        let bad = parse(&[
            "--nats-url=nats://n:4222",
            "--bus-stream=a.b",
            "--bus-subject-prefix=s",
        ])
        .target();
        assert!(bad.is_err());
        let groups = parse(&[
            "--nats-url=nats://n:4222",
            "--bus-stream=a",
            "--bus-subject-prefix=s",
            "--bus-groups=default,replies",
            "--bus-create-stream=false",
        ]);
        assert!(!groups.create_stream);
        assert_eq!(
            groups.target().expect("valid").expect("bus").groups,
            ["default", "replies"]
        );
    }
}
