//! A Redis Sentinel topology for tests: a primary, one replica of it and three sentinels
//! (`redis-server --sentinel`, the same binary as Debian's `redis-sentinel`) watching them as
//! master group [`MASTER`], all on free loopback ports and killed when dropped. The sentinels
//! agree with a quorum of 2 and take a primary for down after [`DOWN_AFTER`].
//!
//! [`SentinelTopology::failover`] is what an operator's `SENTINEL FAILOVER` does: the replica is
//! promoted at once, without waiting for it to have every write (Redis replication is
//! asynchronous), and the old primary becomes its replica.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Options, RedisServer, free_port};

/// The master group's name.
pub const MASTER: &str = "shardset";
/// `sentinel down-after-milliseconds`: a primary silent this long is subjectively down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1_000);

/// A primary, a replica and three sentinels (see the module documentation).
#[derive(Debug)]
pub struct SentinelTopology {
    /// The first primary (after [`Self::failover`], the replica of the promoted one).
    pub primary: RedisServer,
    /// The first replica (after [`Self::failover`], the primary).
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
    /// The servers' working directory: a replica's full sync writes its RDB file there.
    dir: PathBuf,
}

impl Drop for SentinelTopology {
    fn drop(&mut self) {
        self.primary.stop();
        self.replica.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
struct Sentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SentinelTopology {
    /// Starts the five processes and returns once every sentinel knows the replica and the
    /// other two sentinels (so a failover has a replica to promote and a quorum).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "redis-topology-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the servers");
        let in_dir = |mut args: Vec<String>| {
            args.extend(["--dir".into(), dir.display().to_string()]);
            Options {
                args,
                ..Options::default()
            }
        };
        let primary = RedisServer::start_with(in_dir(Vec::new()));
        let replica = RedisServer::start_with(in_dir(vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]));
        wait_for("the replica to sync", || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        let sentinels = (0..3).map(|_| Sentinel::start(primary.port)).collect();
        let topology = Self {
            primary,
            replica,
            sentinels,
            dir,
        };
        wait_for("the sentinels to see the replica and each other", || {
            topology.sentinels.iter().all(|s| {
                let master = s.master();
                field(&master, "num-slaves") == Some("1")
                    && field(&master, "num-other-sentinels") == Some("2")
            })
        });
        topology
    }

    /// `redis+sentinel://127.0.0.1:<port>,…/shardset`: the URL workers and the operator take.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> Option<u16> {
        let mut conn = self.sentinels.iter().find_map(|s| s.conn())?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER)
            .query(&mut conn)
            .ok()?;
        addr.map(|(_, port)| port)
    }

    /// `SENTINEL FAILOVER` (the replica promoted now, whatever it lacks), returning once the
    /// sentinels name the replica and it answers as a primary.
    pub fn failover(&self) {
        let mut conn = self.sentinels[0].conn().expect("a sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query(&mut conn)
            .expect("SENTINEL FAILOVER");
        wait_for("the replica to be promoted", || {
            self.primary_port() == Some(self.replica.port)
                && info(&self.replica, "replication").contains("role:master")
        });
    }

    /// Kills the first primary (after [`Self::failover`], the promoted one's replica).
    pub fn kill_old_primary(&mut self) {
        self.primary.stop();
    }
}

impl Sentinel {
    fn start(primary_port: u16) -> Self {
        for _ in 0..10 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("redis-sentinel-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a directory for sentinel.conf");
            // Sentinel rewrites its file with what it learns, so each has its own.
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} {down}\n\
                     sentinel failover-timeout {MASTER} 10000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = dir.display(),
                    down = DOWN_AFTER.as_millis(),
                ),
            )
            .expect("write sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (apt-get install redis-server)");
            let mut sentinel = Self { child, port, dir };
            if sentinel.wait_up() {
                return sentinel;
            }
        }
        panic!("redis-server --sentinel could not get a free port in 10 attempts");
    }

    /// Waits until this process answers as a sentinel; false if it exited (port taken).
    fn wait_up(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Some(mut conn) = self.conn() {
                let info: redis::RedisResult<String> =
                    redis::cmd("INFO").arg("server").query(&mut conn);
                if let Ok(info) = info {
                    return info.contains(&format!("process_id:{}\r", self.child.id()))
                        && info.contains("redis_mode:sentinel");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server --sentinel did not come up on port {}",
            self.port
        );
    }

    fn conn(&self) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }

    /// `SENTINEL MASTER shardset`, flattened (empty if it cannot be asked).
    fn master(&self) -> Vec<String> {
        self.conn()
            .and_then(|mut conn| {
                redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(MASTER)
                    .query(&mut conn)
                    .ok()
            })
            .unwrap_or_default()
    }
}

/// The value after `name` in a flattened field list.
fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .position(|f| f == name)
        .and_then(|i| fields.get(i + 1))
        .map(String::as_str)
}

/// `INFO <section>` of `server` (empty if it cannot be asked).
fn info(server: &RedisServer, section: &str) -> String {
    server
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
        .and_then(|mut conn| redis::cmd("INFO").arg(section).query(&mut conn))
        .unwrap_or_default()
}

/// Polls `check` every 50 ms for 20 s at most (the sentinels gossip every 2 s, announce
/// replicas from the primary's `INFO` every 10 s at most).
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failover_promotes_the_replica_and_the_sentinels_name_it() {
        let mut topology = SentinelTopology::start();
        assert!(topology.url().starts_with("redis+sentinel://127.0.0.1:"));
        assert_eq!(topology.primary_port(), Some(topology.primary.port));
        topology.failover();
        assert_eq!(topology.primary_port(), Some(topology.replica.port));
        topology.kill_old_primary();
        let pong: String = redis::cmd("SET")
            .arg("written")
            .arg("after")
            .query(&mut topology.replica.conn())
            .expect("the promoted replica takes writes");
        assert_eq!(pong, "OK");
    }
}
