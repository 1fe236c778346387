//! The operator's Redis use against a real redis-server: reading the workers' shard status
//! records, a password-protected Redis, deleting every key of a bot (and only that bot's), and
//! an unreachable Redis failing fast and staying parked instead of slowing every reconcile.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use shard_worker::contract::{Keys, ShardState, ShardStatus};
use shardset_operator::redis_state::{RedisPool, summarize};

/// A redis-server on a free port, killed on drop (also when the test fails).
struct Server {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    fn start_on(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn conn(&self, password: Option<&str>) -> redis::Connection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn record(state: ShardState, guilds: u32) -> String {
    serde_json::to_string(&ShardStatus {
        state,
        guilds,
        pod: "bot-4-0-1".into(),
        reason: None,
        updated_at_ms: 1,
        layout_revision: 0,
    })
    .expect("json")
}

#[tokio::test]
async fn reads_shard_status_records_of_one_layout() {
    let server = Server::start(&[]);
    let keys = Keys::new(42);
    let mut conn = server.conn(None);
    let _: () = conn
        .set(keys.status(4, 0), record(ShardState::Ready, 7))
        .expect("set");
    let _: () = conn
        .set(keys.status(4, 2), record(ShardState::Ready, 5))
        .expect("set");
    // Another layout's record is not counted.
    let _: () = conn
        .set(keys.status(8, 1), record(ShardState::Ready, 100))
        .expect("set");

    let pool = RedisPool::default();
    let records = pool
        .shard_statuses(&server.url(), None, 42, 4)
        .await
        .expect("read");
    assert_eq!(records.len(), 4);
    assert!(records[1].is_none() && records[3].is_none());
    assert_eq!(summarize(&records).guilds, Some(12));
}

#[tokio::test]
async fn uses_the_password_and_cleans_only_the_bots_keys() {
    let server = Server::start(&["--requirepass", "hunter2"]);
    let mut conn = server.conn(Some("hunter2"));
    let ours = Keys::new(42);
    let theirs = Keys::new(43);
    for key in [
        ours.epoch(),
        ours.gate(0),
        ours.session(4, 1),
        ours.lease(4, 1),
        ours.status(4, 1),
        ours.queue(0),
        ours.active_layout(),
        theirs.session(4, 1),
    ] {
        let _: () = conn.set(&key, "x").expect("set");
    }

    let pool = RedisPool::default();
    let wrong = pool.cleanup(&server.url(), Some("wrong"), 42).await;
    assert!(wrong.is_err(), "a wrong password is an error");
    let wrong = wrong.expect_err("error");
    assert!(
        !wrong.to_string().contains("wrong"),
        "no password in errors: {wrong}"
    );

    // A fresh pool: the failure above parks that connection for a while.
    let pool = RedisPool::default();
    let deleted = pool
        .cleanup(&server.url(), Some("hunter2"), 42)
        .await
        .expect("cleanup");
    assert_eq!(deleted, 7);
    let left: Vec<String> = conn.keys("shardset:*").expect("keys");
    assert_eq!(left, vec![theirs.session(4, 1)]);
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_is_not_retried_at_once() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let pool = RedisPool::default();
    let started = Instant::now();
    let first = pool.shard_statuses(&url, None, 1, 2).await;
    assert!(first.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");

    // Now start a server on that port: the pool still answers from its parked failure.
    let server = Server::start_on(port, &[]);
    let again = Instant::now();
    assert!(pool.shard_statuses(&url, None, 1, 2).await.is_err());
    assert!(
        again.elapsed() < Duration::from_millis(100),
        "no new attempt"
    );
    drop(server);
}
