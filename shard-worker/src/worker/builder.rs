//! A whole worker from its [`Settings`]: what the `shard-worker` binary does at startup, for any
//! bot built on the library (`shard-worker/examples/bot.rs` is a complete one).
//!
//! [`Builder::run`] serves the endpoints first (the pod is live, and says why it is not ready,
//! while Discord is asked), asks Discord for the bot id and the gateway (with retries; a refused
//! token is reported, never retried), connects the Identify queue and the records to Redis,
//! prepares the bus when `NATS_URL` is set (waiting while it is unreachable), serves the optional
//! Identify queue facade, runs every shard until shutdown, lets the bus and the handler finish
//! ([`Handler::finish`]), and closes the endpoints last.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

use super::board::Board;
use super::bookkeeper::BookkeeperConfig;
use super::metrics::Metrics;
use super::run::{Outcome, run};
use super::server;
use super::settings::Settings;
use super::start_error::StartError;
use super::startup::{self, REFUSED_TOKEN, RefusalRecords, Refused};
use crate::bus::BusMetrics;
use crate::bus::commands::Responder;
use crate::bus::jetstream::{self, JetStreamConfig};
use crate::command::{Commands, Inboxes};
use crate::gateway::session::SessionConfig;
use crate::gateway::trust::ResumeTrust;
use crate::handler::Handler;
use crate::handover::acting::{Acting, HandoverConfig};
use crate::handover::records::HandoverRecords;
use crate::identify::gate::{GateConfig, RedisQueue, effective_max_concurrency, manage};
use crate::identify::http_facade::{self, BearerToken, FacadeConfig};
use crate::identify::queue::IdentifyQueue;
use crate::shard::config::{ShardConfig, Shared};
use crate::shard::records::Records;
use shardset_contract::redis_link::{RedisEndpoint, RedisLink};
use shardset_contract::redis_tls::CaBundle;
use shardset_contract::rest::{DiscordRest, GatewayBot};
use shardset_contract::token::Token;
use shardset_contract::{Keys, env};
use shardset_handler::Auth;

/// The longest the publishes still in flight at shutdown may take.
const BUS_DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Sets up and runs a worker: its settings, the secrets, and the optional parts a bot may want
/// to bring (a metrics registry of its own, session timing).
pub struct Builder {
    settings: Settings,
    token: Token,
    redis_password: Option<String>,
    /// The bearer token the Identify queue facade requires (`QUEUE_TOKEN`).
    queue_token: Option<BearerToken>,
    nats_password: Option<String>,
    nats_token: Option<String>,
    registry: Registry,
    session: SessionConfig,
    /// The bot's command handle, and the shards' ends of its channels.
    commands: Commands,
    inboxes: Inboxes,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A worker of `settings` with `token` (no Redis password).
    pub fn new(settings: Settings, token: Token) -> Self {
        let (commands, inboxes) = Commands::new(
            settings.shard_first..=settings.shard_last,
            settings.shard_total,
        );
        Self {
            settings,
            token,
            redis_password: None,
            queue_token: None,
            nats_password: None,
            nats_token: None,
            registry: Registry::default(),
            session: SessionConfig::default(),
            commands,
            inboxes,
        }
    }

    /// `settings` with the secrets only the environment carries: `DISCORD_TOKEN`,
    /// `REDIS_PASSWORD`, `NATS_PASSWORD` and `NATS_TOKEN` (when set), and `QUEUE_TOKEN` (when
    /// set: set but empty, it is refused with `--queue-listen`, never taken as no token).
    pub fn with_env_secrets(settings: Settings) -> Self {
        let token = Token::new(std::env::var(env::DISCORD_TOKEN).unwrap_or_default());
        let mut builder = Self::new(settings, token);
        let secret = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        builder.redis_password = secret(env::REDIS_PASSWORD);
        builder.nats_password = secret(env::NATS_PASSWORD);
        builder.nats_token = secret(env::NATS_TOKEN);
        builder.queue_token = std::env::var(env::QUEUE_TOKEN).ok().map(BearerToken::new);
        builder
    }

    /// Everything from the pod env the operator writes: [`Settings::from_env`] and the secrets.
    pub fn from_env() -> Result<Self, clap::Error> {
        Ok(Self::with_env_secrets(Settings::from_env()?))
    }

    /// The password of the Redis user, added to the settings' Redis URL.
    pub fn redis_password(mut self, password: impl Into<String>) -> Self {
        self.redis_password = Some(password.into());
        self
    }

    /// The bearer token the Identify queue facade (`--queue-listen`) requires of every request.
    pub fn queue_token(mut self, token: BearerToken) -> Self {
        self.queue_token = Some(token);
        self
    }

    /// The password of the NATS user (`NATS_USER`) of the bus.
    pub fn nats_password(mut self, password: impl Into<String>) -> Self {
        self.nats_password = Some(password.into());
        self
    }

    /// The token of the bus, when it authenticates by token.
    pub fn nats_token(mut self, token: impl Into<String>) -> Self {
        self.nats_token = Some(token.into());
        self
    }

    /// The registry `/metrics` serves (the worker's metrics are added under `shardset_worker`):
    /// register the bot's own metrics in it first.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The shards' session timing (deadlines, backoffs, the Identify-loop guard).
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The handle that sends gateway commands on this worker's shards (presence, voice state,
    /// member requests, raw opcodes): give a clone to the handler, or to any task of the bot.
    /// Commands wait for their shard's session while the worker starts (up to
    /// [`crate::command::CommandConfig::live_wait`]).
    pub fn commands(&self) -> Commands {
        self.commands.clone()
    }

    /// A Discord REST client with the worker's token and API base, for a handler that calls
    /// Discord.
    pub fn rest(&self) -> Result<DiscordRest, StartError> {
        Ok(DiscordRest::new(
            &self.settings.discord_api_url,
            self.token.clone(),
        )?)
    }

    /// Runs the worker with `handler` until `shutdown` turns true (or a handler panicked: see
    /// [`Outcome::panicked`]). `Err` only when it could not start at all.
    pub async fn run<H: Handler>(
        mut self,
        handler: Arc<H>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, StartError> {
        let mut registry = std::mem::take(&mut self.registry);
        let s = &self.settings;
        if s.shard_first > s.shard_last || s.shard_last >= s.shard_total {
            return Err(StartError::ShardRange {
                first: s.shard_first,
                last: s.shard_last,
                total: s.shard_total,
            });
        }
        if self.token.is_empty() {
            return Err(StartError::NoToken);
        }
        let bus = self.bus_config()?;
        let metrics = Arc::new(Metrics::new(&mut registry));
        // Registered before `/metrics` serves the registry.
        let bus = bus.map(|config| {
            let metrics = BusMetrics::new(&mut registry, &config.target.stream);
            (config, metrics)
        });
        let board = Arc::new(Board::new(
            s.shard_first,
            s.shard_last,
            Arc::clone(&metrics),
        ));
        // The endpoints first: the pod is live (and says why it is not ready) while Discord is
        // asked.
        let (stop_endpoints, endpoints_stopped) = watch::channel(false);
        let router = server::router(Arc::clone(&board), Arc::new(registry));
        let (addr, endpoints) = server::serve(s.listen, router, endpoints_stopped.clone())
            .await
            .map_err(|source| StartError::Listen {
                addr: s.listen,
                source,
            })?;
        info!(%addr, "serving /healthz, /readyz, /metrics");
        let started = Started {
            board,
            metrics,
            endpoints_stopped,
            inboxes: std::mem::take(&mut self.inboxes),
            bus,
        };
        let outcome = self
            .run_shards(Arc::clone(&handler), started, shutdown)
            .await;
        if outcome.is_ok() {
            handler.finish().await;
        }
        let _ = stop_endpoints.send(true);
        let _ = endpoints.await;
        outcome
    }

    /// Everything between the endpoints coming up and going down.
    async fn run_shards<H: Handler>(
        &self,
        handler: Arc<H>,
        mut started: Started,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, StartError> {
        let s = &self.settings;
        let pod = s.pod_name();
        let layout = s.layout_name();
        let rest = self.rest()?;
        let (me, bot) = match startup::ask_discord(&rest, &mut shutdown).await {
            Ok(Some(answers)) => answers,
            Ok(None) => return Ok(Outcome::default()),
            Err(Refused::Token) => {
                let bot_id = self.token.bot_id();
                return Ok(self
                    .refuse(&started, REFUSED_TOKEN, bot_id, &pod, shutdown)
                    .await);
            }
            Err(Refused::Config(message)) => return Err(StartError::Config(message)),
        };
        // An override must divide Discord's value: else one Discord bucket would get several
        // gates.
        let discord = bot.session_start_limit.max_concurrency;
        let max_concurrency = match effective_max_concurrency(discord, s.max_concurrency) {
            Ok(value) => value,
            Err(reason) => {
                return Ok(self
                    .refuse(&started, &reason, Some(me.id), &pod, shutdown)
                    .await);
            }
        };
        let keys = Keys::new(me.id);
        info!(
            shardset = %s.shardset, pod = %pod, layout = %layout,
            first = s.shard_first, last = s.shard_last, total = s.shard_total,
            max_concurrency, remaining = bot.session_start_limit.remaining,
            "starting shards"
        );

        let client = self.redis_client()?;
        let conn = manage(&client)?;
        let queue = self
            .identify_queue(
                (client, conn.clone()),
                keys.clone(),
                &bot,
                max_concurrency,
                &pod,
                rest,
            )
            .await;
        let records = Records::new(conn.clone(), keys.clone(), s.shard_total);
        let handover = HandoverConfig {
            window: Duration::from_millis(s.handover_window_ms),
            claim_ttl: Duration::from_millis(s.handover_claim_ttl_ms),
        };
        let acting = Arc::new(Acting::with_redis(
            layout,
            HandoverRecords::new(conn, keys),
            handover,
            Arc::clone(&started.metrics),
        ));
        let (bus, bus_running) = match started.bus.take() {
            Some((config, metrics)) => {
                let total = s.shard_total;
                let acting = Arc::clone(&acting);
                let prefix = config.target.prefix.clone();
                let kept = metrics.clone();
                match jetstream::start(config, total, acting, metrics, &mut shutdown).await? {
                    Some(started) => (Some(started.bus), Some((started.running, prefix, kept))),
                    None => return Ok(Outcome::default()),
                }
            }
            None => (None, None),
        };
        if let Some(queue_addr) = s.queue_listen {
            let facade = FacadeConfig {
                total: s.shard_total,
                token: self.queue_token.clone(),
            };
            match &facade.token {
                Some(token) if token.is_empty() => {
                    return Err(StartError::Config(format!(
                        "{} is set but empty",
                        env::QUEUE_TOKEN
                    )));
                }
                None if !queue_addr.ip().is_loopback() => warn!(
                    %queue_addr,
                    "the Identify queue facade listens beyond this host without {}: anyone who reaches it can spend session starts",
                    env::QUEUE_TOKEN
                ),
                _ => {}
            }
            let router = http_facade::router(Arc::clone(&queue), facade);
            let (addr, _) = server::serve(queue_addr, router, started.endpoints_stopped.clone())
                .await
                .map_err(|source| StartError::Listen {
                    addr: queue_addr,
                    source,
                })?;
            info!(%addr, "serving the Identify queue (GET /?shard=N)");
        }

        let resume_window = Duration::from_millis(s.resume_window_ms);
        let shared = Arc::new(Shared {
            config: ShardConfig {
                total: s.shard_total,
                intents: s.intents,
                gateway_url: bot.url.clone(),
                compression: s.gateway_compression,
                send_window: Duration::from_millis(s.gateway_send_window_ms),
                resume_trust: ResumeTrust::new(&s.discord_api_url, &bot.url),
                session: SessionConfig {
                    silent_beats: s.gateway_silent_beats,
                    ..self.session.clone()
                },
                lease_ttl: Duration::from_secs(15),
                resume_window,
                pod: pod.clone(),
                read_buffer: 2 * 1024,
            },
            token: self.token.clone(),
            queue,
            records: Some(records),
            handler,
            bus,
            board: started.board,
            acting,
            inboxes: started.inboxes,
        });
        let bookkeeping = BookkeeperConfig {
            tick: Duration::from_millis(500),
            checkpoint_every: Duration::from_secs(2),
            resume_window,
            lease_ttl: shared.config.lease_ttl,
            fence_margin: Duration::from_secs(3),
            status_ttl: Duration::from_secs(30),
            pod,
        };
        // Commands back follow the shards' liveness and the layout's role on the bus.
        let (stop_commands, commands_stopped) = watch::channel(false);
        let commands_back = bus_running.as_ref().map(|(running, prefix, metrics)| {
            Responder {
                client: running.connection.client().clone(),
                prefix: prefix.clone(),
                total: s.shard_total,
                commands: self.commands.clone(),
                board: Arc::clone(&shared.board),
                acting: Arc::clone(&shared.acting),
                metrics: metrics.clone(),
            }
            .spawn(commands_stopped)
        });
        // `shared` (and the handler and the bus in it) is dropped when `run` returns: the
        // handler's `finish` then holds the only reference the worker had, and the publisher
        // ends once what it took is published.
        let outcome = run(shared, bookkeeping, shutdown).await;
        let _ = stop_commands.send(true);
        if let Some(responder) = commands_back {
            let _ = responder.await;
        }
        if let Some((running, ..)) = bus_running {
            running.stop(BUS_DRAIN_WAIT).await;
        }
        Ok(outcome)
    }

    /// The bus of the settings, with its credentials; `None` without `NATS_URL`.
    fn bus_config(&self) -> Result<Option<JetStreamConfig>, StartError> {
        let bus = &self.settings.bus;
        let Some(target) = bus
            .target()
            .map_err(|e| StartError::Config(e.to_string()))?
        else {
            return Ok(None);
        };
        let auth = match (
            &bus.nats_creds_file,
            &bus.nats_user,
            &self.nats_password,
            &self.nats_token,
        ) {
            (Some(path), ..) => Auth::CredsFile(path.clone()),
            (None, Some(user), Some(password), _) => {
                Auth::UserPassword(user.clone(), password.clone())
            }
            (None, None, None, Some(token)) => Auth::Token(token.clone()),
            (None, None, None, None) => Auth::None,
            _ => {
                return Err(StartError::Config(format!(
                    "{} and {} go together",
                    env::NATS_USER,
                    env::NATS_PASSWORD
                )));
            }
        };
        Ok(Some(JetStreamConfig {
            target,
            auth,
            limits: bus.limits(),
            stream_limits: bus.stream_limits(),
            manage: bus.create_stream,
            name: self.settings.pod_name(),
        }))
    }

    /// The Identify queue in Redis, with the budget Discord just gave stored.
    /// `redis`: the client (for the hand-off subscription) and the process's shared connection.
    async fn identify_queue(
        &self,
        (client, conn): (RedisEndpoint, RedisLink),
        keys: Keys,
        bot: &GatewayBot,
        max_concurrency: u32,
        pod: &str,
        rest: DiscordRest,
    ) -> Arc<dyn IdentifyQueue> {
        let s = &self.settings;
        let window = Duration::from_millis(s.identify_window_ms);
        let mut gate = GateConfig::new(max_concurrency, window, s.identify_reserve);
        if let Some(margin) = s.identify_margin_ms {
            gate = gate.with_margin(Duration::from_millis(margin));
        }
        // One subscription to the gate hand-offs for every shard of the process.
        let queue = RedisQueue::new(conn, keys, gate, pod, Some(rest)).with_wakeups(client);
        let limit = &bot.session_start_limit;
        if let Err(e) = queue.sync_budget(limit.remaining, limit.reset_after).await {
            warn!(error = %e, "cannot store the session start budget yet; it is read again when needed");
        }
        Arc::new(queue)
    }

    /// Shards that must not start: reported until shutdown (see [`startup::report_refusal`]).
    async fn refuse(
        &self,
        started: &Started,
        reason: &str,
        bot_id: Option<u64>,
        pod: &str,
        shutdown: watch::Receiver<bool>,
    ) -> Outcome {
        let to = RefusalRecords {
            bot_id,
            redis: self.connect_redis().ok(),
            shard_total: self.settings.shard_total,
            pod,
        };
        startup::report_refusal(&started.board, reason, to, shutdown).await;
        Outcome {
            refused: Some(reason.to_owned()),
            ..Outcome::default()
        }
    }

    /// The (lazy) connection to the bot's Redis: the URL with the password, trusting the CA
    /// bundle of `REDIS_CA_FILE` when set (read and checked here, so a wrong file stops the
    /// start with its path).
    fn connect_redis(&self) -> Result<RedisLink, StartError> {
        Ok(manage(&self.redis_client()?)?)
    }

    /// The client [`Self::connect_redis`] connects with (also the gate hand-offs' subscriber).
    fn redis_client(&self) -> Result<RedisEndpoint, StartError> {
        let ca = match &self.settings.redis_ca_file {
            Some(path) => Some(CaBundle::read(path)?),
            None => None,
        };
        Ok(RedisEndpoint::open(
            &self.settings.redis_url,
            self.redis_password.as_deref(),
            ca.as_ref(),
        )?)
    }
}

/// What is up once the endpoints are served.
struct Started {
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    /// Turns true when the endpoints (and the queue facade) close.
    endpoints_stopped: watch::Receiver<bool>,
    /// The shards' command channels (their senders are [`Builder::commands`]).
    inboxes: Inboxes,
    /// The bus to publish to, and its metrics (registered with the others).
    bus: Option<(JetStreamConfig, BusMetrics)>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_shows_the_examples_that_ci_builds() {
        // The README's library examples are `examples/*.rs` verbatim, so they compile (clippy
        // --all-targets builds examples) and cannot drift from the API.
        let readme = include_str!("../../../README.md");
        for (section, example) in [
            ("As a library", include_str!("../../examples/bot.rs")),
            (
                "Commands from the bot",
                include_str!("../../examples/commands.rs"),
            ),
        ] {
            assert!(
                readme.contains(&format!("```rust\n{example}```")),
                "README.md's \"{section}\" block differs from its example in shard-worker/examples/"
            );
        }
    }
}
