//! A real `redis-server` for tests and benchmarks: one process per fixture, on a free loopback
//! port, killed when dropped (also when the test panics). Needs `redis-server` on `PATH`
//! (Debian: `apt-get install redis-server`).
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
}

/// A running `redis-server` (see the crate documentation).
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    options: Options,
    dir: Option<PathBuf>,
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
            };
            match server.launch() {
                Ok(()) => return server,
                Err(PortTaken) => continue,
            }
        }
        panic!("redis-server could not get a free port in 10 attempts");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
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
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ];
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
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
            {
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
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
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
}
