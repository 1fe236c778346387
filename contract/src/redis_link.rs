//! Where the bot's Redis is and the one reconnecting connection to it, for the worker and the
//! operator: a `redis://`/`rediss://` URL names the server; a `redis+sentinel://` (or TLS
//! `rediss+sentinel://`) URL names Redis Sentinel daemons and the master group they watch, and
//! the primary is asked of them at every (re)connect, so a failover moves the connection to the
//! promoted replica.
//!
//! The sentinel URL is the scheme other Redis clients settled on (redis-sentinel-url, LangChain,
//! RedisVL, docket), since the redis crate has sentinel discovery (`redis::sentinel`, feature
//! `sentinel`) but no URL for it:
//!
//! `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master-name[/db][?sentinel_username=…&sentinel_password=…]`
//!
//! The user info is the primary's (as in a `redis://` URL; `REDIS_PASSWORD` replaces the
//! password), the port defaults to Sentinel's 26379, and the daemons' own credentials, when they
//! have any (`requirepass` in sentinel.conf), go in the query. `rediss+sentinel://` speaks TLS to
//! the daemons and the servers alike, trusting the CA bundle when given (see [`redis_tls`]).
//!
//! The redis crate's `ConnectionManager` reconnects to one fixed address; [`RedisLink`] keeps
//! one per primary found and drops it when an answer says the node is gone or no longer the
//! primary (an I/O error, a timeout, `READONLY`, `MASTERDOWN`, `NOREPLICAS`), or when a sentinel
//! announces `+switch-master` for the group (as Redis's Sentinel client guidelines ask: a
//! promoted replica and the old primary both take writes until Sentinel demotes the old one, up
//! to ~10 s later when it is still up): that request fails (callers fail closed and retry, as
//! they do while a plain Redis restarts) and the next one asks the sentinels again. Requests are never re-sent here: a Lua script may have run before its reply
//! was lost. A promoted replica may lack the primary's last writes (replication is
//! asynchronous); the take-gate script's epoch marker (`docs/redis-protocol.md`) notices the
//! other server's `run_id` and holds the gates.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsCertificates, TlsMode, Value,
};

use crate::redis_tls::{self, CaBundle, RedisClientError};

/// Sentinel's own port, when a daemon of the URL names none.
pub const SENTINEL_PORT: u16 = 26379;

/// How long one lookup of the primary (every daemon in turn, then the primary's `ROLE`) may
/// take before the request that needed it fails.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The parts of a `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the daemons and the servers.
    pub tls: bool,
    /// The daemons, `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The master group the daemons watch (`sentinel monitor <name> …`).
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    // Without the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Why a sentinel URL does not parse (never quoting it: it may hold a password).
fn bad(reason: &'static str) -> RedisClientError {
    RedisClientError::Url(RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        reason,
    )))
}

impl SentinelUrl {
    /// `None` for a URL of another scheme; the parts, or why not, for a sentinel one.
    pub fn parse(url: &str) -> Option<Result<Self, RedisClientError>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            (true, url.strip_prefix("rediss+sentinel://")?)
        };
        Some(Self::parse_rest(tls, rest))
    }

    /// The URL again with `***` for each password, for logs and status messages.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = match (&self.username, &self.password) {
            (Some(user), Some(_)) => format!("{user}:***@"),
            (None, Some(_)) => ":***@".to_owned(),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(host, port)| {
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            })
            .collect();
        let mut query = Vec::new();
        if let Some(user) = &self.sentinel_username {
            query.push(format!("sentinel_username={user}"));
        }
        if self.sentinel_password.is_some() {
            query.push("sentinel_password=***".to_owned());
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!(
            "{scheme}+sentinel://{user}{}/{}/{}{query}",
            hosts.join(","),
            self.master,
            self.db
        )
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<Self, RedisClientError> {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(parse_host)
            .collect::<Result<Vec<_>, _>>()?;
        // The user info, path and query through the url crate (percent-decoding), on a
        // stand-in host.
        let standin = match userinfo {
            Some(info) => format!("redis://{info}@sentinels{tail}"),
            None => format!("redis://sentinels{tail}"),
        };
        let parsed =
            url::Url::parse(&standin).map_err(|_| bad("the sentinel URL does not parse"))?;
        let username = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(percent_decode);
        let mut path = parsed.path_segments().into_iter().flatten();
        let master = path
            .next()
            .map(percent_decode)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("the sentinel URL names no master group (/<name>)"))?;
        let db = match path.next().filter(|s| !s.is_empty()) {
            Some(db) => db
                .parse()
                .map_err(|_| bad("the sentinel URL's database is not a number"))?,
            None => 0,
        };
        if path.next().is_some_and(|s| !s.is_empty()) {
            return Err(bad("the sentinel URL's path is more than /<master>[/<db>]"));
        }
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sentinel_username" => sentinel_username = Some(value.into_owned()),
                "sentinel_password" => sentinel_password = Some(value.into_owned()),
                _ => return Err(bad("the sentinel URL has an unknown query parameter")),
            }
        }
        Ok(Self {
            tls,
            sentinels,
            master,
            db,
            username,
            password,
            sentinel_username,
            sentinel_password,
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// One daemon: `host[:port]`, `[v6][:port]`.
fn parse_host(host: &str) -> Result<(String, u16), RedisClientError> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (name, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("a sentinel's IPv6 address lacks its ]"))?;
        (name, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return Err(bad("the sentinel URL has an empty host"));
    }
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| bad("a sentinel's port is not a number"))?,
        None => SENTINEL_PORT,
    };
    Ok((name.to_owned(), port))
}

/// Where the bot's Redis is: one server, or the primary the sentinels name.
#[derive(Clone)]
pub struct RedisEndpoint(Endpoint);

#[derive(Clone)]
enum Endpoint {
    Direct(redis::Client),
    Sentinel {
        client: Arc<tokio::sync::Mutex<SentinelClient>>,
        master: String,
        db: i64,
    },
}

impl RedisEndpoint {
    /// The endpoint of `url` (`redis://`, `rediss://`, `redis+sentinel://`, `rediss+sentinel://`),
    /// with `password` (e.g. `REDIS_PASSWORD`) instead of the URL's, trusting `ca` for TLS.
    pub fn open(
        url: &str,
        password: Option<&str>,
        ca: Option<&CaBundle>,
    ) -> Result<Self, RedisClientError> {
        let Some(sentinel) = SentinelUrl::parse(url) else {
            let mut info = url.into_connection_info().map_err(RedisClientError::Url)?;
            if let Some(password) = password {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
            return Ok(Self(Endpoint::Direct(redis_tls::client(info, ca)?)));
        };
        let mut sentinel = sentinel?;
        if let Some(password) = password {
            sentinel.password = Some(password.to_owned());
        }
        Self::sentinel(&sentinel, ca)
    }

    fn sentinel(url: &SentinelUrl, ca: Option<&CaBundle>) -> Result<Self, RedisClientError> {
        if ca.is_some() && !url.tls {
            return Err(RedisClientError::NotTls);
        }
        let addrs = url.sentinels.iter().map(|(host, port)| {
            if url.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut builder =
            SentinelClientBuilder::new(addrs, &url.master, SentinelServerType::Master)
                .map_err(RedisClientError::Url)?
                .set_client_to_redis_db(url.db);
        if let Some(username) = &url.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(username) = &url.sentinel_username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &url.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if url.tls {
            redis_tls::tls_provider();
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(ca) = ca {
                let certs = || TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.pem().to_vec()),
                };
                builder = builder
                    .set_client_to_redis_certificates(certs())
                    .set_client_to_sentinel_certificates(certs());
            }
        }
        let client = builder.build().map_err(RedisClientError::Url)?;
        Ok(Self(Endpoint::Sentinel {
            client: Arc::new(tokio::sync::Mutex::new(client)),
            master: url.master.clone(),
            db: url.db,
        }))
    }

    /// Whether the primary is found through sentinels.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.0, Endpoint::Sentinel { .. })
    }

    /// A client for the primary now (asking the sentinels, bounded by a timeout): for a
    /// subscription, made again after each loss.
    pub async fn client(&self) -> RedisResult<redis::Client> {
        match &self.0 {
            Endpoint::Direct(client) => Ok(client.clone()),
            Endpoint::Sentinel { client, .. } => {
                let mut sentinels = client.lock().await;
                tokio::time::timeout(LOOKUP_TIMEOUT, sentinels.async_get_client())
                    .await
                    .map_err(|_| {
                        RedisError::from((
                            redis::ErrorKind::Io,
                            "no sentinel named the primary in time",
                        ))
                    })?
            }
        }
    }

    /// The shared reconnecting connection (lazy: nothing connects before the first request).
    pub fn link(&self, config: ConnectionManagerConfig) -> Result<RedisLink, RedisClientError> {
        Ok(RedisLink(match &self.0 {
            Endpoint::Direct(client) => Link::Direct(
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(RedisClientError::Url)?,
            ),
            Endpoint::Sentinel { db, master, .. } => {
                let link = Arc::new(SentinelLink {
                    endpoint: self.clone(),
                    config,
                    db: *db,
                    current: Mutex::new(None),
                    generation: Mutex::new(0),
                    switches: Mutex::new(None),
                });
                // Without a runtime (a client built outside one) only errors move the link.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let listener = runtime.spawn(listen_for_switches(
                        self.clone(),
                        master.clone(),
                        Arc::downgrade(&link),
                    ));
                    *link.switches.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
                }
                Link::Sentinel(link)
            }
        }))
    }

    /// A client of the first sentinel that answers (bounded by a timeout).
    async fn sentinel_client(&self) -> RedisResult<redis::Client> {
        let Endpoint::Sentinel { client, .. } = &self.0 else {
            return self.client().await;
        };
        let mut sentinels = client.lock().await;
        tokio::time::timeout(LOOKUP_TIMEOUT, sentinels.async_get_sentinel_client())
            .await
            .map_err(|_| RedisError::from((redis::ErrorKind::Io, "no sentinel answered in time")))?
    }
}

/// The bot's Redis connection: cheap to clone, all clones sharing it; a `ConnectionManager` for
/// one server, one that follows the primary under Sentinel (see the module documentation).
#[derive(Clone)]
pub struct RedisLink(Link);

#[derive(Clone)]
enum Link {
    Direct(ConnectionManager),
    Sentinel(Arc<SentinelLink>),
}

struct SentinelLink {
    endpoint: RedisEndpoint,
    config: ConnectionManagerConfig,
    db: i64,
    /// The manager of the primary last found, with its generation.
    current: Mutex<Option<(u64, ConnectionManager)>>,
    generation: Mutex<u64>,
    /// The `+switch-master` subscription, ended with the link.
    switches: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SentinelLink {
    fn drop(&mut self) {
        if let Some(listener) = self
            .switches
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            listener.abort();
        }
    }
}

/// Subscribes to `+switch-master` on a sentinel (again after any loss, 1 s later) and forgets
/// the link's primary when `master` moves, while the link lives.
async fn listen_for_switches(
    endpoint: RedisEndpoint,
    master: String,
    link: std::sync::Weak<SentinelLink>,
) {
    use futures_util::StreamExt;
    loop {
        let subscribed = async {
            let mut pubsub = endpoint.sentinel_client().await?.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let payload: String = message.get_payload().unwrap_or_default();
                    // `<master name> <old ip> <old port> <new ip> <new port>`
                    if payload.split(' ').next() != Some(master.as_str()) {
                        continue;
                    }
                    let Some(link) = link.upgrade() else { return };
                    link.forget(&format!("a sentinel announced +switch-master {payload}"));
                }
            }
            Err(error) => tracing::debug!(%error, "cannot subscribe to +switch-master yet"),
        }
        if link.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl SentinelLink {
    async fn manager(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let client = self.endpoint.client().await?;
        // Another request may have found it meanwhile: keep one manager.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let manager = ConnectionManager::new_lazy_with_config(client, self.config.clone())?;
        let mut generation = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *generation += 1;
        let current = (*generation, manager);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(current.clone());
        Ok(current)
    }

    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After an error on the manager of `generation`: forget it if the error says the node is
    /// gone or no longer the primary.
    fn failed(&self, generation: u64, error: &RedisError) {
        if !points_elsewhere(error) {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::info!(%error, "Redis primary lost; asking the sentinels again");
            *current = None;
        }
    }

    /// Forgets the primary whatever it is: the next request asks the sentinels.
    fn forget(&self, why: &str) {
        if self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
        {
            tracing::info!(why, "Redis primary moved; asking the sentinels again");
        }
    }
}

/// Whether `error` means the node answered for is gone or no longer the primary (so the
/// sentinels must be asked again), rather than a refused command.
pub fn points_elsewhere(error: &RedisError) -> bool {
    use redis::ServerErrorKind;
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(
            error.kind(),
            redis::ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
        // A write inside a Lua script on a replica (the script error carries the code), and a
        // primary cut off from its replicas under `min-replicas-to-write`.
        || ["READONLY", "NOREPLICAS"]
            .iter()
            .any(|code| error.to_string().contains(code))
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Link::Direct(manager) => manager.req_packed_command(cmd),
            Link::Sentinel(link) => Box::pin(async move {
                let (generation, mut manager) = link.manager().await?;
                let result = manager.req_packed_command(cmd).await;
                if let Err(e) = &result {
                    link.failed(generation, e);
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Link::Direct(manager) => manager.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(link) => Box::pin(async move {
                let (generation, mut manager) = link.manager().await?;
                let result = manager.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &result {
                    link.failed(generation, e);
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Link::Direct(manager) => manager.get_db(),
            Link::Sentinel(link) => link.db,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SentinelUrl, RedisClientError> {
        SentinelUrl::parse(url).expect("a sentinel URL")
    }

    #[test]
    fn plain_urls_are_not_sentinel_urls() {
        for url in [
            "redis://127.0.0.1:6379/",
            "rediss://h/",
            "unix:///tmp/r.sock",
        ] {
            assert!(SentinelUrl::parse(url).is_none(), "{url}");
        }
    }

    #[test]
    fn a_sentinel_url_names_daemons_master_db_and_credentials() {
        let url = parse(
            "redis+sentinel://:p%40ss@s-0:26380,s-1,[::1]:5000/mymaster/2?sentinel_password=sp",
        )
        .expect("valid");
        assert!(!url.tls);
        assert_eq!(
            url.sentinels,
            vec![
                ("s-0".to_owned(), 26380),
                ("s-1".to_owned(), SENTINEL_PORT),
                ("::1".to_owned(), 5000),
            ]
        );
        assert_eq!(url.master, "mymaster");
        assert_eq!(url.db, 2);
        assert_eq!(url.username, None);
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.sentinel_password.as_deref(), Some("sp"));
        assert!(!format!("{url:?}").contains("p@ss"), "{url:?}");
        assert_eq!(
            url.redacted(),
            "redis+sentinel://:***@s-0:26380,s-1:26379,[::1]:5000/mymaster/2?sentinel_password=***"
        );

        let tls = parse("rediss+sentinel://bot:pw@s.example/primary").expect("valid");
        assert!(tls.tls);
        assert_eq!(tls.username.as_deref(), Some("bot"));
        assert_eq!(tls.db, 0);
    }

    #[test]
    fn bad_sentinel_urls_are_refused_without_quoting_them() {
        for url in [
            "redis+sentinel://s-0:26379",
            "redis+sentinel://s-0:26379/",
            "redis+sentinel://s-0:port/m",
            "redis+sentinel://,s-1/m",
            "redis+sentinel://s-0/m/notadb",
            "redis+sentinel://s-0/m/0/extra",
            "redis+sentinel://:secret@s-0/m?unknown=1",
            "redis+sentinel://[::1/m",
        ] {
            let error = parse(url).expect_err(url);
            assert_eq!(error.metric_label(), "redis_url");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn a_bundle_needs_the_tls_scheme() {
        let error = RedisEndpoint::sentinel(
            &parse("redis+sentinel://s-0/m").expect("valid"),
            Some(&CaBundle::test_only()),
        )
        .err()
        .expect("refused");
        assert_eq!(error.metric_label(), "redis_ca_without_tls");
    }

    #[test]
    fn lost_nodes_and_demoted_primaries_point_elsewhere() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(points_elsewhere(&io));
        let readonly = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(points_elsewhere(&readonly));
        let script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "Error running script",
            "READONLY You can't write against a read only replica. script: x".to_owned(),
        ));
        assert!(points_elsewhere(&script));
        let cut_off = redis::RedisError::from((
            redis::ErrorKind::Extension,
            "NOREPLICAS",
            "Not enough good replicas to write.".to_owned(),
        ));
        assert!(points_elsewhere(&cut_off));
        let refused = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "wrong number of arguments",
        ));
        assert!(!points_elsewhere(&refused));
    }
}
