//! A real `redis-server` for tests and benchmarks: one process per fixture, on a free loopback
//! port, killed when dropped (also when the test panics). Needs `redis-server` on `PATH`
//! (Debian: `apt-get install redis-server`). With [`Options::tls`] it listens for TLS only, on a
//! certificate of a CA made for it ([`RedisServer::ca_file`]), and [`RedisServer::url`] is
//! `rediss://`. [`sentinel::SentinelTopology`]: a primary, a replica and three sentinels.
//!
//! ```no_run
//! let redis = redis_test_server::RedisServer::start();
//! let mut conn = redis.conn();
//! let _: () = redis::cmd("SET").arg("k").arg(1).query(&mut conn).expect("redis");
//! ```

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod sentinel;
mod tls;
use tls::TlsFiles;

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Persist to an RDB file in a private directory only when told (`SAVE`), and load it on
    /// [`RedisServer::restart`]: a restart then keeps what the last save held and loses what came
    /// after, as a restart from RDB/AOF or a failover to a lagging replica does. Without it every
    /// (re)start is empty.
    pub persistent: bool,
    /// More `redis-server` arguments, e.g. `["--requirepass", "secret"]`.
    pub args: Vec<String>,
    /// TLS only (`--port 0 --tls-port`), clients not asked for a certificate: the way to test a
    /// `rediss://` URL with a CA bundle.
    pub tls: bool,
}

/// A running `redis-server` (see the crate documentation).
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    options: Options,
    dir: Option<PathBuf>,
    tls: Option<TlsFiles>,
}

/// The port was taken by another process (see [`RedisServer::start_with`]).
#[derive(Debug)]
struct PortTaken;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    /// An empty server without persistence.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// A server started as `options` say.
    pub fn start_with(options: Options) -> Self {
        // `free_port` only says nobody listened a moment ago: two fixtures starting at once
        // (tests of one binary run in parallel) can be told the same port. The loser's
        // redis-server exits, and its PING would be answered by the winner: two tests sharing
        // one Redis (and one bot's keys). So each start checks it reached its own process, and
        // takes another port if not.
        for _ in 0..10 {
            let port = free_port();
            let dir = options.persistent.then(|| {
                let dir =
                    std::env::temp_dir().join(format!("redis-test-{}-{port}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("a directory for the RDB file");
                dir
            });
            let mut server = Self {
                child: None,
                port,
                options: options.clone(),
                dir,
                tls: options.tls.then(TlsFiles::generate),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(PortTaken) => continue,
            }
        }
        panic!("redis-server could not get a free port in 10 attempts");
    }

    /// `redis://127.0.0.1:<port>/`, or `rediss://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// With TLS: the PEM file of the CA that signed the server's certificate (`REDIS_CA_FILE`).
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// With TLS: that CA's certificate, PEM.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// A client of this server (trusting its CA with TLS), without a password.
    pub fn client(&self) -> redis::Client {
        match &self.tls {
            None => redis::Client::open(self.url()),
            Some(tls) => {
                // redis builds its rustls config on the process's provider: ring, as everywhere.
                let _ = rustls::crypto::ring::default_provider().install_default();
                redis::Client::build_with_tls(
                    self.url(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(tls.ca_pem.clone().into_bytes()),
                    },
                )
            }
        }
        .expect("a client of the test redis-server")
    }

    /// Stops the server (without persistence its data is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (stopping it first): empty, or with the last saved data.
    /// Returns once it answers `PING` (with a password in `args`, once it answers at all).
    pub fn restart(&mut self) {
        if self.launch().is_err() {
            panic!(
                "port {} was taken by another process while redis-server was down",
                self.port
            );
        }
    }

    /// Stops the server if running, starts it on `self.port` and waits until this very
    /// process answers.
    fn launch(&mut self) -> Result<(), PortTaken> {
        self.stop();
        let mut args: Vec<String> = match &self.tls {
            None => vec!["--port".into(), self.port.to_string()],
            Some(tls) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        args.extend([
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ]);
        if let Some(dir) = &self.dir {
            args.extend(["--dir".into(), dir.display().to_string()]);
        }
        args.extend(self.options.args.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited() {
                // Most likely the port was taken between `free_port` and the bind.
                self.child = None;
                return Err(PortTaken);
            }
            if let Ok(mut conn) = self.client().get_connection() {
                match redis::cmd("INFO").arg("server").query::<String>(&mut conn) {
                    Ok(info) if info.contains(&format!("process_id:{pid}\r")) => return Ok(()),
                    // Someone else's server on our port.
                    Ok(_) => {
                        self.stop();
                        return Err(PortTaken);
                    }
                    // Up, but wants a password: ours if it stays up (a redis-server that lost
                    // the bind exits at once, before it could ever answer).
                    Err(e) if e.code() == Some("NOAUTH") => {
                        std::thread::sleep(Duration::from_millis(100));
                        if self.exited() {
                            self.child = None;
                            return Err(PortTaken);
                        }
                        return Ok(());
                    }
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    /// The child has ended.
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// A blocking connection (without a password).
    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("connect to the test redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persistent_restart_keeps_only_what_was_saved() {
        let mut server = RedisServer::start_with(Options {
            persistent: true,
            ..Options::default()
        });
        let mut conn = server.conn();
        let _: () = redis::cmd("SET")
            .arg("kept")
            .arg(1)
            .query(&mut conn)
            .expect("redis");
        let _: () = redis::cmd("SAVE").query(&mut conn).expect("redis");
        let _: () = redis::cmd("SET")
            .arg("lost")
            .arg(1)
            .query(&mut conn)
            .expect("redis");
        server.restart();
        let mut conn = server.conn();
        let kept: Option<i64> = redis::cmd("GET")
            .arg("kept")
            .query(&mut conn)
            .expect("redis");
        let lost: Option<i64> = redis::cmd("GET")
            .arg("lost")
            .query(&mut conn)
            .expect("redis");
        assert_eq!((kept, lost), (Some(1), None));
        let port = server.port;
        drop(server);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "stopped on drop"
        );
    }

    #[test]
    fn a_port_answered_by_another_server_is_not_taken_for_ours() {
        let first = RedisServer::start();
        // What two fixtures told the same port by `free_port` would do.
        let mut second = RedisServer {
            child: None,
            port: first.port,
            options: Options::default(),
            dir: None,
            tls: None,
        };
        assert!(second.launch().is_err(), "the port is the first server's");
        // `start` takes another port instead, and reaches its own process.
        let third = RedisServer::start();
        assert_ne!(third.port, first.port);
    }

    #[test]
    fn extra_arguments_reach_the_server() {
        let server = RedisServer::start_with(Options {
            args: vec!["--requirepass".into(), "secret".into()],
            ..Options::default()
        });
        let mut conn = server.conn();
        let refused = redis::cmd("PING").query::<String>(&mut conn);
        assert!(refused.is_err(), "a password is required");
    }

    #[test]
    fn a_tls_server_answers_rediss_with_its_ca_and_refuses_plain_clients() {
        let server = RedisServer::start_with(Options {
            tls: true,
            ..Options::default()
        });
        assert!(server.url().starts_with("rediss://127.0.0.1:"));
        let ca = std::fs::read_to_string(server.ca_file().expect("a CA file")).expect("read");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let pong: String = redis::cmd("PING")
            .query(&mut server.conn())
            .expect("PING over TLS");
        assert_eq!(pong, "PONG");
        // Not trusted without the CA (the compiled-in public roots do not know it).
        let untrusted = redis::Client::open(server.url())
            .expect("client")
            .get_connection();
        let error = untrusted.err().expect("refused").to_string();
        assert!(error.contains("certificate"), "{error}");
        // No plain listener on its port.
        let plain = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port))
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        assert!(plain.is_err(), "plain PING on the TLS port");
    }
}
