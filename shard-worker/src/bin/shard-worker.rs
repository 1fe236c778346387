//! The default shard worker: runs shards `SHARD_FIRST..=SHARD_LAST` of a `SHARD_TOTAL` layout,
//! configured by the env contract the operator writes (each variable has a flag of the same
//! meaning for runs by hand; the token is env-only). See the README's "Shard worker" section.
//!
//! SIGTERM: stop dispatching, save each session to Redis, close with a resumable code, release
//! the leases, drain the forward queue, exit 0. (A retired layout ends its sessions instead.)
//!
//! A token Discord refuses (401) or shards closed for good (4004, 4010–4014) do not end the
//! process: a restart would only call Discord again (a crash loop spends requests and, for
//! Identify, session starts). The worker reports them (shard state Fatal with the reason in
//! `P:status` and `/metrics`, `/readyz` 503, `/healthz` 200) and waits for SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use prometheus_client::registry::Registry;
use shard_worker::gateway::session::SessionConfig;
use shard_worker::handler::default::DefaultHandler;
use shard_worker::handler::forward::Forwarder;
use shard_worker::handover::records::HandoverRecords;
use shard_worker::handover::{Acting, HandoverConfig};
use shard_worker::identify::gate::{GateConfig, RedisQueue, connect, effective_max_concurrency};
use shard_worker::identify::{IdentifyQueue, http_facade};
use shard_worker::shard::records::Records;
use shard_worker::shard::{ShardConfig, Shared};
use shard_worker::worker::board::Board;
use shard_worker::worker::bookkeeper::BookkeeperConfig;
use shard_worker::worker::metrics::Metrics;
use shard_worker::worker::{self, server};
use shardset_contract::rest::{DEFAULT_API_URL, DiscordRest, RestError};
use shardset_contract::token::Token;
use shardset_contract::{Keys, ShardState, ShardStatus, env};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "shard-worker",
    version,
    about = "Runs a range of Discord gateway shards"
)]
struct Args {
    /// First shard id of this worker (inclusive).
    #[arg(long, env = env::SHARD_FIRST)]
    shard_first: u32,
    /// Last shard id of this worker (inclusive).
    #[arg(long, env = env::SHARD_LAST)]
    shard_last: u32,
    /// Shard count of the layout (`num_shards`).
    #[arg(long, env = env::SHARD_TOTAL)]
    shard_total: u32,
    /// Override of Discord's max_concurrency (else read from GET /gateway/bot).
    #[arg(long, env = env::MAX_CONCURRENCY)]
    max_concurrency: Option<u32>,
    /// Redis shared by every pod of the bot.
    #[arg(long, env = env::REDIS_URL)]
    redis_url: String,
    /// Discord REST base; the gateway URL comes from GET /gateway/bot.
    #[arg(long, env = env::DISCORD_API_URL, default_value = DEFAULT_API_URL)]
    discord_api_url: String,
    /// Gateway intents bitfield (default: GUILDS | GUILD_MESSAGES).
    #[arg(long, env = env::DISCORD_INTENTS, default_value_t = 513)]
    intents: u64,
    /// This layout's name (default: the shard total).
    #[arg(long, env = env::SHARDSET_LAYOUT)]
    layout: Option<String>,
    /// The owning ShardSet (logs).
    #[arg(long, env = env::SHARDSET_NAME, default_value = "")]
    shardset: String,
    /// This pod's name (leases, status records); default: the host name.
    #[arg(long, env = env::POD_NAME)]
    pod: Option<String>,
    /// Session starts never spent.
    #[arg(long, env = env::IDENTIFY_RESERVE, default_value_t = 0)]
    identify_reserve: u32,
    /// Identify window in ms (Discord: 5000; shorter only against a time-scaled fake).
    #[arg(long, env = env::IDENTIFY_WINDOW_MS, default_value_t = shardset_contract::DISCORD_IDENTIFY_WINDOW_MS)]
    identify_window_ms: u64,
    /// Extra hold of a used gate after the window, in ms (default: 2 % of the window, 50..250 ms).
    #[arg(long, env = env::IDENTIFY_MARGIN_MS)]
    identify_margin_ms: Option<u64>,
    /// How long saved sessions stay resumable, in ms.
    #[arg(long, env = env::RESUME_WINDOW_MS, default_value_t = 180_000)]
    resume_window_ms: u64,
    /// `W` of the hand-over protocol in ms (docs/resharding.md); the operator sets it.
    #[arg(long, env = env::HANDOVER_WINDOW_MS, default_value_t = shardset_contract::DEFAULT_HANDOVER_WINDOW_MS)]
    handover_window_ms: u64,
    /// Lifetime of a hand-over claim in ms (at least 3 × the window).
    #[arg(long, env = env::HANDOVER_CLAIM_TTL_MS, default_value_t = shardset_contract::DEFAULT_HANDOVER_CLAIM_TTL_MS)]
    handover_claim_ttl_ms: u64,
    /// Forward every dispatch as JSON to this in-pod endpoint.
    #[arg(long, env = env::FORWARD_URL)]
    forward_url: Option<String>,
    /// Answer each MESSAGE_CREATE (while this layout is active) with a REST message "ack <id>".
    #[arg(long, env = env::REPLY_TO_MESSAGES)]
    reply_to_messages: bool,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = env::WORKER_LISTEN, default_value_t = SocketAddr::from(([0, 0, 0, 0], shardset_contract::WORKER_HTTP_PORT)))]
    listen: SocketAddr,
    /// Also serve the twilight-compatible Identify queue (`GET /?shard=N`) on this address. A
    /// bare port binds to 127.0.0.1 only: the facade has no authentication and every `200`
    /// spends a session start. Give a full address (`0.0.0.0:8081`) only behind a NetworkPolicy.
    #[arg(long, value_parser = parse_queue_listen)]
    queue_listen: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Runtime threads. 1 (the default) runs every shard on one thread: a gateway shard is light,
    /// and one thread avoids cross-thread wake-ups on every dispatch. Raise it for pods with many
    /// busy shards.
    #[arg(long, env = env::WORKER_THREADS, default_value_t = 1)]
    threads: usize,
}

/// `--queue-listen`: `PORT` (loopback only) or `HOST:PORT`.
fn parse_queue_listen(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is neither a port nor an address like 127.0.0.1:8081"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_json);
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "shard worker failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` (default `info`) decides what is logged, except the targets that can carry the
/// token ([`shardset_contract::token::NEVER_LOGGED_TARGETS`]): a second filter turns those off, so
/// even `RUST_LOG=trace` (or `tungstenite=trace`) cannot bring them back.
fn init_tracing(json: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let never = shardset_contract::token::NEVER_LOGGED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::OFF),
    );
    let registry = tracing_subscriber::registry().with(filter).with(never);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
}

/// Why the worker cannot start its shards.
enum Refused {
    /// Discord refused the token (401): report it and wait; never retry.
    Token,
    /// Our own configuration is wrong (a malformed REST base).
    Config(String),
}

/// Asks until Discord answers; a refused token stops at once (no retry loop on 401). `None`:
/// shut down while waiting.
async fn with_retries<T, F, Fut>(
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
    mut call: F,
) -> Result<Option<T>, Refused>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RestError>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match call().await {
            Ok(value) => return Ok(Some(value)),
            Err(RestError::Unauthorized) => {
                error!("{what}: {}", RestError::Unauthorized);
                return Err(Refused::Token);
            }
            Err(RestError::InvalidBase(base)) => {
                return Err(Refused::Config(format!(
                    "{what}: invalid Discord API URL {base:?}"
                )));
            }
            Err(e) => {
                let wait = match &e {
                    RestError::RateLimited { retry_after } => *retry_after,
                    _ => delay,
                };
                warn!(error = %e, "{what} failed; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The reason every shard reports when Discord refused the token.
const REFUSED_TOKEN: &str = "invalid token (401)";

/// Shards that must not start (a refused token, a wrong configuration): every shard Fatal with
/// `reason` (metrics, `/readyz`) and, when the bot id is known (`bot_id`: from `/users/@me`, or
/// read from the token), in `P:status` too (refreshed within its TTL) until SIGTERM. No retry: a
/// restart would only ask again.
async fn report_refusal(
    args: &Args,
    bot_id: Option<u64>,
    pod: &str,
    board: &Board,
    reason: &str,
    mut shutdown: watch::Receiver<bool>,
) {
    for shard in args.shard_first..=args.shard_last {
        board.set_state(shard, ShardState::Fatal, Some(reason.to_owned()));
    }
    error!(
        reason,
        "every shard stays down until the pod is replaced with a working configuration (no retries)"
    );
    let records = match (bot_id, redis_url(&args.redis_url)) {
        (Some(id), Ok(url)) => connect(&url)
            .ok()
            .map(|conn| Records::new(conn, Keys::new(id), args.shard_total)),
        _ => None,
    };
    let status_ttl = Duration::from_secs(30);
    loop {
        if let Some(records) = &records {
            for shard in args.shard_first..=args.shard_last {
                let status = ShardStatus {
                    state: ShardState::Fatal,
                    guilds: 0,
                    pod: pod.to_owned(),
                    reason: Some(reason.to_owned()),
                    updated_at_ms: shard_worker::worker::bookkeeper::unix_ms(),
                    layout_revision: 0,
                };
                if let Err(e) = records.write_status(shard, &status, status_ttl).await {
                    warn!(error = %e, "cannot report the refusal in Redis");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(status_ttl / 3) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

fn redis_url(url: &str) -> anyhow::Result<String> {
    let Ok(password) = std::env::var(env::REDIS_PASSWORD) else {
        return Ok(url.to_owned());
    };
    let mut parsed = url::Url::parse(url).context("REDIS_URL is not a URL")?;
    parsed
        .set_password(Some(&password))
        .map_err(|()| anyhow::anyhow!("REDIS_URL cannot carry a password"))?;
    Ok(parsed.to_string())
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.shard_first > args.shard_last || args.shard_last >= args.shard_total {
        bail!(
            "invalid shard range {}..={} of {} (need first <= last < total)",
            args.shard_first,
            args.shard_last,
            args.shard_total
        );
    }
    let token = Token::new(std::env::var(env::DISCORD_TOKEN).unwrap_or_default());
    if token.is_empty() {
        bail!("{} is not set", env::DISCORD_TOKEN);
    }
    let pod = args
        .pod
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("shard-worker-{}", std::process::id()));
    let layout = args
        .layout
        .clone()
        .unwrap_or_else(|| shardset_contract::layout_name(args.shard_total));

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let board = Arc::new(Board::new(
        args.shard_first,
        args.shard_last,
        Arc::clone(&metrics),
    ));

    // The endpoints first: the pod is live (and says why it is not ready) while Discord is asked.
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let (addr, server_task) = server::serve(
        args.listen,
        server::router(Arc::clone(&board), registry),
        server_stop_rx.clone(),
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(%addr, "serving /healthz, /readyz, /metrics");

    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down: saving sessions for the next owner");
        let _ = shutdown_tx.send(true);
    });

    let rest = DiscordRest::new(&args.discord_api_url, token.clone())?;
    let asked = async {
        let Some(me) =
            with_retries("GET /users/@me", &mut shutdown_rx, || rest.current_user()).await?
        else {
            return Ok(None);
        };
        let bot = with_retries("GET /gateway/bot", &mut shutdown_rx, || rest.gateway_bot()).await?;
        Ok(bot.map(|bot| (me, bot)))
    }
    .await;
    let (me, bot) = match asked {
        Ok(Some(answers)) => answers,
        Ok(None) => {
            stop_server(server_stop_tx, server_task).await;
            return Ok(());
        }
        Err(Refused::Token) => {
            let reason = REFUSED_TOKEN;
            report_refusal(&args, token.bot_id(), &pod, &board, reason, shutdown_rx).await;
            stop_server(server_stop_tx, server_task).await;
            return Ok(());
        }
        Err(Refused::Config(message)) => bail!(message),
    };
    // An override must divide Discord's value: else one Discord bucket would get several gates.
    let max_concurrency = match effective_max_concurrency(
        bot.session_start_limit.max_concurrency,
        args.max_concurrency,
    ) {
        Ok(value) => value,
        Err(reason) => {
            report_refusal(&args, Some(me.id), &pod, &board, &reason, shutdown_rx).await;
            stop_server(server_stop_tx, server_task).await;
            return Ok(());
        }
    };
    let keys = Keys::new(me.id);
    info!(
        shardset = %args.shardset, pod = %pod, layout = %layout,
        first = args.shard_first, last = args.shard_last, total = args.shard_total,
        max_concurrency, remaining = bot.session_start_limit.remaining,
        "starting shards"
    );

    let conn = connect(&redis_url(&args.redis_url)?).context("invalid REDIS_URL")?;
    let window = Duration::from_millis(args.identify_window_ms);
    let mut gate = GateConfig::new(max_concurrency, window, args.identify_reserve);
    if let Some(margin) = args.identify_margin_ms {
        gate.margin = Duration::from_millis(margin);
        gate.connect_bound = gate
            .connect_bound
            .max(gate.hold() + gate.hold().max(Duration::from_secs(2)));
    }
    let queue = RedisQueue::new(conn.clone(), keys.clone(), gate, &pod, Some(rest.clone()));
    let limit = bot.session_start_limit;
    if let Err(e) = queue.sync_budget(limit.remaining, limit.reset_after).await {
        warn!(error = %e, "cannot store the session start budget yet; it is read again when needed");
    }
    let queue: Arc<dyn IdentifyQueue> = Arc::new(queue);
    let records = Records::new(conn.clone(), keys.clone(), args.shard_total);
    let handover = HandoverConfig {
        window: Duration::from_millis(args.handover_window_ms),
        claim_ttl: Duration::from_millis(args.handover_claim_ttl_ms),
    };
    let acting = Arc::new(Acting::with_redis(
        layout.clone(),
        HandoverRecords::new(conn, keys),
        handover,
        Arc::clone(&metrics),
    ));

    let (forwarder, forward_task) = match &args.forward_url {
        Some(url) => {
            let (f, task) = Forwarder::spawn(url.clone());
            (Some(f), Some(task))
        }
        None => (None, None),
    };
    let replier = args.reply_to_messages.then(|| rest.clone());
    let handler = Arc::new(DefaultHandler::new(forwarder, replier));

    if let Some(queue_addr) = args.queue_listen {
        let (addr, _) = server::serve(
            queue_addr,
            http_facade::router(Arc::clone(&queue)),
            server_stop_rx,
        )
        .await
        .with_context(|| format!("cannot listen on {queue_addr}"))?;
        info!(%addr, "serving the Identify queue (GET /?shard=N)");
    }

    let resume_window = Duration::from_millis(args.resume_window_ms);
    let shared = Arc::new(Shared {
        config: ShardConfig {
            total: args.shard_total,
            intents: args.intents,
            gateway_url: bot.url.clone(),
            session: SessionConfig::default(),
            lease_ttl: Duration::from_secs(15),
            resume_window,
            pod: pod.clone(),
            read_buffer: 2 * 1024,
        },
        token,
        queue,
        records: Some(records),
        handler: Arc::clone(&handler),
        board,
        acting,
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

    let outcome = worker::run(Arc::clone(&shared), bookkeeping, shutdown_rx).await;
    drop(shared);
    // The forwarder's queue drains once the handler (its only sender) is gone.
    if let Some(task) = forward_task {
        match Arc::try_unwrap(handler) {
            Ok(mut handler) => drop(handler.take_forwarder()),
            Err(_) => warn!("handler still shared at exit; the forward queue may not drain"),
        }
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(0)) => {}
            Ok(Ok(dropped)) => warn!(dropped, "dispatches could not be forwarded"),
            _ => warn!("the forward queue did not drain in time"),
        }
    }
    stop_server(server_stop_tx, server_task).await;
    if !outcome.panicked.is_empty() {
        // A bug in the handler: exit with an error so the pod restarts; the restart resumes
        // every session (saved above), replaying the dispatch that panicked.
        bail!(
            "the handler panicked on shard(s) {:?}; every session was saved for the restart",
            outcome.panicked
        );
    }
    if !outcome.fatal.is_empty() {
        info!(
            fatal = outcome.fatal.len(),
            "exiting after SIGTERM; shards closed for good are reported in P:status until then"
        );
    }
    Ok(())
}

async fn stop_server(stop: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    let _ = stop.send(true);
    let _ = task.await;
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_queue_port_listens_on_loopback_only() {
        assert_eq!(
            parse_queue_listen("8081"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8081)))
        );
        assert_eq!(
            parse_queue_listen("0.0.0.0:8081"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 8081)))
        );
        assert!(parse_queue_listen("everywhere").is_err());
    }
}
