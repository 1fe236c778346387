//! Connecting to the bus: the NATS connection, the stream's layout read from its metadata, the
//! ownership bucket, and a partition's consumer (bound, or created when missing). The
//! connection, the layout check and the bucket are public: the publishing side (the shard
//! worker) connects and binds the same way.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, kv};
use shardset_contract::bus::{self, Partition, metadata};
use tracing::info;

use crate::config::{Auth, Config};
use crate::error::Error;
use crate::wire;

/// What the stream's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub prefix: String,
    pub partitions: u32,
}

/// Connects to NATS as `config` says (retrying the first connection until it succeeds: the
/// handler may start before the bus).
pub(crate) async fn connect(config: &Config) -> Result<async_nats::Client, Error> {
    let options = async_nats::ConnectOptions::new()
        .name(format!("shardset-handler {}", config.replica))
        .retry_on_initial_connect();
    connect_with(&config.nats_url, &config.auth, options).await
}

/// Connects to `nats_url` (several comma-separated) with `auth` added to `options`.
pub async fn connect_with(
    nats_url: &str,
    auth: &Auth,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, Error> {
    let failed = |reason: String| Error::Connect {
        url: host_of(nats_url),
        reason,
    };
    let options = match auth {
        Auth::None => options,
        Auth::UserPassword(user, password) => {
            options.user_and_password(user.clone(), password.clone())
        }
        Auth::Token(token) => options.token(token.clone()),
        Auth::CredsFile(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| failed(format!("credentials file {}: {e}", path.display())))?,
    };
    let addresses = nats_url
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    options
        .connect(addresses)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// The URL without credentials, for messages and logs.
pub fn host_of(url: &str) -> String {
    url.split(',')
        .map(str::trim)
        .map(|u| match u.split_once("://") {
            Some((scheme, rest)) => format!(
                "{scheme}://{}",
                rest.rsplit_once('@').map_or(rest, |(_, host)| host)
            ),
            None => u.rsplit_once('@').map_or(u, |(_, host)| host).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The stream, once it exists (the publishing side creates it; a handler may start first and
/// waits, saying so every 30 s), and its layout.
pub(crate) async fn stream(js: &jetstream::Context, name: &str) -> Result<(Stream, Layout), Error> {
    let mut attempt: u64 = 0;
    let mut stream = loop {
        match js.get_stream(name).await {
            Ok(stream) => break stream,
            Err(e) => {
                if attempt.is_multiple_of(60) {
                    info!(stream = name, error = %e, "waiting for the bus stream");
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let info = stream
        .info()
        .await
        .map_err(|e| Error::jetstream("stream info", e))?;
    let layout = layout_of(name, &info.config.metadata)?;
    Ok((stream, layout))
}

/// Reads the protocol's metadata keys (`docs/bus-protocol.md`, "Stream"): a stream without
/// them, or of another protocol version, is not a bus stream.
pub fn layout_of(
    stream: &str,
    meta: &std::collections::HashMap<String, String>,
) -> Result<Layout, Error> {
    let not_bus = |reason| Error::NotABusStream {
        stream: stream.to_owned(),
        reason,
    };
    let version: u32 = meta
        .get(metadata::PROTOCOL)
        .and_then(|v| v.parse().ok())
        .ok_or(not_bus("no shardset.io/protocol metadata"))?;
    if version != bus::PROTOCOL_VERSION {
        return Err(not_bus("unsupported shardset.io/protocol version"));
    }
    let prefix = meta
        .get(metadata::SUBJECT_PREFIX)
        .filter(|p| !p.is_empty())
        .ok_or(not_bus("no shardset.io/subject-prefix metadata"))?
        .clone();
    let partitions: u32 = meta
        .get(metadata::PARTITIONS)
        .and_then(|v| v.parse().ok())
        .filter(|p| *p > 0)
        .ok_or(not_bus("no valid shardset.io/partitions metadata"))?;
    Ok(Layout { prefix, partitions })
}

/// The ownership bucket `<stream>-handlers`: bound if it exists (its `max_age` is the lease
/// TTL), else created with `ttl` (history 1). Two replicas creating it at once: the loser binds.
/// Returns the bucket and its TTL.
pub async fn ownership_bucket(
    js: &jetstream::Context,
    stream: &str,
    ttl: Duration,
) -> Result<(kv::Store, Duration), Error> {
    let bucket = bus::handlers_bucket(stream);
    let store = match js.get_key_value(&bucket).await {
        Ok(store) => store,
        Err(_) => match js
            .create_key_value(kv::Config {
                bucket: bucket.clone(),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
        {
            Ok(store) => store,
            Err(create) => js
                .get_key_value(&bucket)
                .await
                .map_err(|_| Error::jetstream("creating the ownership bucket", create))?,
        },
    };
    let status = store
        .status()
        .await
        .map_err(|e| Error::jetstream("ownership bucket status", e))?;
    let ttl = status.max_age();
    if ttl.is_zero() {
        return Err(Error::jetstream(
            "ownership bucket",
            format!("{bucket} has no max_age: leases would never expire"),
        ));
    }
    Ok((store, ttl))
}

/// The group's consumer of `partition`, created with the protocol's configuration if missing
/// (an existing one is used as it is).
pub(crate) async fn consumer(
    stream: &Stream,
    stream_name: &str,
    layout: &Layout,
    group: &str,
    partition: Partition,
    ack_wait: Duration,
) -> Result<PullConsumer, Error> {
    let config = wire::consumer_config(stream_name, &layout.prefix, group, partition, ack_wait);
    let name = bus::consumer_name(stream_name, group, partition);
    stream
        .get_or_create_consumer(&name, config)
        .await
        .map_err(|e| Error::jetstream("binding a partition consumer", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_the_layout_from_metadata() {
        let config = wire::stream_config("s", "shardset.ns.bot", 8, bus::DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(
            layout_of("s", &config.metadata).expect("layout"),
            Layout {
                prefix: "shardset.ns.bot".into(),
                partitions: 8
            }
        );
        let err = layout_of("s", &HashMap::new()).expect_err("not a bus stream");
        assert_eq!(err.label(), "not_a_bus_stream");
        let mut future = config.metadata.clone();
        future.insert(metadata::PROTOCOL.into(), "2".into());
        assert!(layout_of("s", &future).is_err());
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            host_of("nats://u:secret@a:4222, tls://b:4222"),
            "nats://a:4222,tls://b:4222"
        );
    }
}
