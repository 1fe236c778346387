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
            options,
            dir,
        };
        server.restart();
        server
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
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
            {
                match redis::cmd("PING").query::<String>(&mut conn) {
                    Ok(_) => return,
                    // Up, but wants a password: that is the caller's business.
                    Err(e) if e.code() == Some("NOAUTH") => return,
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come up on port {}", self.port);
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
