//! NATS JetStream as the worker's bus (`docs/bus-protocol.md`): the connection, the [`Sink`]
//! that publishes with the protocol's headers and `Nats-Msg-Id` and waits for the `PubAck`, and
//! [`start`], which prepares the stream ([`setup`]), keeps the handlers' `layout` key
//! ([`layout_key`]) and starts the publisher.

pub mod layout_key;
pub mod setup;

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::context::{ContextBuilder, PublishErrorKind};
use async_nats::{Event, HeaderMap, header};
use shardset_handler::Auth;
use shardset_handler::setup::{connect_with, host_of};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use self::setup::{SetupError, StreamLimits, prepare};
use super::publisher::Destination;
use super::room::{Limits, Room};
use super::settings::BusTarget;
use super::sink::{Message, PublishError, Sink, Stored};
use super::{Bus, BusMetrics, PublisherTask};
use crate::handover::acting::Acting;

/// How long a publish waits for its acknowledgement before it is retried (same id).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause between attempts to prepare the bus; doubles up to 10 s.
const PREPARE_RETRY: Duration = Duration::from_millis(500);

/// The worker's NATS connection and its JetStream context.
#[derive(Debug, Clone)]
pub struct Connection {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Connection {
    /// The NATS client: commands back (`S.commands.<total>.<shard>`) subscribe on it.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

/// Publishes into the stream whose subjects the messages name.
#[derive(Debug, Clone)]
pub struct JetStreamSink {
    connection: Connection,
}

impl Sink for JetStreamSink {
    async fn publish(&self, message: &Message) -> Result<Stored, PublishError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &message.headers {
            headers.insert(*name, value.as_str());
        }
        headers.insert(header::NATS_MESSAGE_ID, message.id.as_str());
        let ack = self
            .connection
            .js
            .publish_with_headers(message.subject.clone(), headers, message.payload.clone())
            .await
            .map_err(classify)?;
        let ack = ack.await.map_err(classify)?;
        Ok(Stored {
            duplicate: ack.duplicate,
        })
    }

    fn connected(&self) -> bool {
        self.connection.client.connection_state() == State::Connected
    }
}

/// A JetStream publish error as the publisher sees it: retried, except a message larger than
/// the server or the stream takes.
fn classify(e: jetstream::context::PublishError) -> PublishError {
    let detail = e.to_string();
    let api_code = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    let reason = match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => "too_large",
        _ if api_code == Some(jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => "too_large",
        PublishErrorKind::TimedOut => "timed_out",
        PublishErrorKind::StreamNotFound => "no_stream",
        PublishErrorKind::BrokenPipe => "disconnected",
        // `discard: new` at a limit: "maximum messages exceeded", "maximum bytes exceeded".
        _ if api_code == Some(jetstream::ErrorCode::STREAM_STORE_FAILED)
            && detail.contains("maximum") =>
        {
            "full"
        }
        _ => "other",
    };
    PublishError {
        reason,
        permanent: reason == "too_large",
        detail,
    }
}

/// Everything the worker needs to publish to a JetStream bus.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    pub target: BusTarget,
    pub auth: Auth,
    pub limits: Limits,
    pub stream_limits: StreamLimits,
    /// Create the stream, consumers and bucket when missing, and update the stream's limits.
    pub manage: bool,
    /// The connection's name on the server (the pod).
    pub name: String,
}

/// A started JetStream bus: the handle the shards share, and what runs beside them.
pub struct Started {
    pub bus: Bus,
    pub running: Running,
}

/// The bus's tasks and connection, stopped once the shards ended ([`Running::stop`]).
pub struct Running {
    pub connection: Connection,
    publisher: PublisherTask,
    layout_key: JoinHandle<()>,
}

impl Running {
    /// Once every [`Bus`] handle is dropped (the shards ended): waits up to `wait` for the
    /// publishes still in flight, then closes. What is cut off was not checkpointed: the next
    /// owner replays it, and the stream drops what it had.
    pub async fn stop(self, wait: Duration) {
        self.layout_key.abort();
        let publisher = self.publisher.abort_handle();
        if tokio::time::timeout(wait, self.publisher).await.is_err() {
            publisher.abort();
            warn!("publishes still in flight at exit; the next owner replays them");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.connection.client.flush()).await;
    }
}

/// Why the bus could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] shardset_handler::Error),
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Connects, prepares the stream (trying again while the bus is unreachable or the stream is
/// not there yet, until `shutdown`: `Ok(None)`), starts the publisher for a layout of `total`
/// shards and the `layout` key's keeper. A stream of another layout is an error.
pub async fn start(
    config: JetStreamConfig,
    total: u32,
    acting: Arc<Acting>,
    metrics: BusMetrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Started>, StartError> {
    let room = Arc::new(Room::new(config.limits, metrics));
    let events = Arc::clone(&room);
    let options = async_nats::ConnectOptions::new()
        .name(format!("shardset-worker {}", config.name))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let room = Arc::clone(&events);
            async move {
                match event {
                    // Pause the shards now rather than after the first publish times out.
                    Event::Disconnected => {
                        room.set_accepting(false);
                        warn!("lost the connection to the bus; reconnecting");
                    }
                    Event::Connected => info!("connected to the bus"),
                    other => debug!(event = %other, "bus connection event"),
                }
            }
        });
    let client = connect_with(&config.target.nats_url, &config.auth, options).await?;
    let js = ContextBuilder::new()
        .timeout(PUBLISH_TIMEOUT)
        .max_ack_inflight(config.limits.messages + 1_024)
        .build(client.clone());
    let connection = Connection { client, js };
    let target = &config.target;
    let mut pause = PREPARE_RETRY;
    let prepared = loop {
        match prepare(&connection.js, target, &config.stream_limits, config.manage).await {
            Ok(prepared) => break prepared,
            Err(SetupError::NotYet { what, reason }) => {
                warn!(url = %host_of(&target.nats_url), stream = %target.stream, what, %reason, "the bus is not ready; trying again");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(None),
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
            Err(mismatch) => return Err(mismatch.into()),
        }
    };
    info!(stream = %target.stream, prefix = %target.prefix, partitions = target.partitions, "publishing every dispatch to the bus");
    let (bus, publisher) = Bus::start(
        JetStreamSink {
            connection: connection.clone(),
        },
        Destination {
            prefix: target.prefix.clone(),
            partitions: target.partitions,
        },
        room,
        total,
        Arc::clone(&acting),
    );
    let keeper = layout_key::Keeper {
        js: connection.js.clone(),
        bucket_name: shardset_contract::bus::handlers_bucket(&target.stream),
        bucket: prepared.bucket,
        total,
        acting,
    };
    let layout_key = tokio::spawn(keeper.run(shutdown.clone()));
    Ok(Some(Started {
        bus,
        running: Running {
            connection,
            publisher,
            layout_key,
        },
    }))
}
