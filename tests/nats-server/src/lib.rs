//! A real `nats-server` with JetStream for tests: one process per fixture, on a free loopback
//! port, with its own store directory, killed when dropped (also when the test panics). It can be
//! stopped and started again on the same port with the same store, as an outage of the bus looks
//! to its clients (they reconnect to the same address and find their streams again).
//!
//! The binary is built from its Go module by `make test-tools` (`tests/cluster/build-go.sh
//! tests`, which `make unit` runs first) into `~/.cache/shardset/bin/nats-server`. Looked up in
//! this order: `$NATS_SERVER_BIN`, `$SHARDSET_CACHE_DIR/bin` (else `$XDG_CACHE_HOME/shardset/bin`,
//! else `~/.cache/shardset/bin`), then `PATH`.
//!
//! ```no_run
//! let mut nats = nats_test_server::NatsServer::start();
//! let url = nats.url(); // nats://127.0.0.1:<port>
//! nats.stop(); // clients see the bus go away
//! nats.restart(); // same port, same streams
//! ```

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a server is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// More `nats-server` arguments, e.g. `["--user", "u", "--pass", "p"]`.
    pub args: Vec<String>,
}

/// A running `nats-server -js` (see the crate documentation).
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    options: Options,
    /// Private directory: `store/` (JetStream) and `nats.log`.
    dir: PathBuf,
    binary: PathBuf,
}

/// The port was taken by another process (see [`NatsServer::start_with`]).
#[derive(Debug)]
struct PortTaken;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where the `nats-server` binary is (see the crate documentation); `None` when nowhere.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("SHARDSET_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("shardset")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/shardset")));
    if let Some(cached) = cache.map(|d| d.join("bin/nats-server"))
        && cached.exists()
    {
        return Some(cached);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
}

/// Distinguishes the launches of this process, so a server's name is never reused.
static LAUNCHES: AtomicU64 = AtomicU64::new(0);

impl NatsServer {
    /// A server with JetStream and an empty store.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// A server started as `options` say.
    pub fn start_with(options: Options) -> Self {
        let binary = binary().unwrap_or_else(|| {
            panic!(
                "nats-server not found: build it with `make test-tools` \
                 (tests/cluster/build-go.sh tests), or set NATS_SERVER_BIN"
            )
        });
        // As with redis-test-server: `free_port` only says nobody listened a moment ago, so
        // each start checks it reached its own process (by its unique server name) and takes
        // another port if not.
        for _ in 0..10 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "nats-test-{}-{port}-{}",
                std::process::id(),
                LAUNCHES.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(dir.join("store")).expect("a store directory");
            let mut server = Self {
                child: None,
                port,
                options: options.clone(),
                dir,
                binary: binary.clone(),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(PortTaken) => continue,
            }
        }
        panic!("nats-server could not get a free port in 10 attempts");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log file (useful when a test fails).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// Stops the server at once (SIGKILL: no goodbye to clients, like a crash or a cut network).
    /// Its store is kept for [`Self::restart`] (see [`Self::stop_gracefully`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server as Kubernetes stops a pod (SIGTERM): it flushes its state (consumers'
    /// acknowledgements included) before exiting. [`Self::stop`] is a crash: the acknowledgements
    /// of the last moments may be lost, and those events delivered again after the restart.
    pub fn stop_gracefully(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signalled = Command::new(&self.binary)
            .args(["--signal", &format!("term={}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// The server's process id while it runs (for measuring its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && !self.exited()
    }

    /// Starts it again on the same port with the same store (stopping it first); returns once it
    /// answers.
    pub fn restart(&mut self) {
        if self.launch().is_err() {
            panic!(
                "port {} was taken by another process while nats-server was down",
                self.port
            );
        }
    }

    /// Stops the server if running, starts it on `self.port` and waits until this very process
    /// answers (its INFO names it).
    fn launch(&mut self) -> Result<(), PortTaken> {
        self.stop();
        let name = format!(
            "nats-test-{}-{}-{}",
            std::process::id(),
            self.port,
            LAUNCHES.fetch_add(1, Ordering::Relaxed)
        );
        let mut args: Vec<String> = vec![
            "--jetstream".into(),
            "--addr".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--store_dir".into(),
            self.dir.join("store").display().to_string(),
            "--server_name".into(),
            name.clone(),
            "--log".into(),
            self.log_file().display().to_string(),
        ];
        args.extend(self.options.args.iter().cloned());
        let child = Command::new(&self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exited() {
                // Most likely the port was taken between `free_port` and the bind.
                self.child = None;
                return Err(PortTaken);
            }
            match info_line(self.port) {
                // JetStream is enabled (and its store recovered) before the server accepts
                // clients, so an INFO from our process means it is ready.
                Some(info) if info.contains(&format!("\"server_name\":\"{name}\"")) => {
                    return Ok(());
                }
                Some(_) => {
                    self.stop();
                    return Err(PortTaken);
                }
                None => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nats-server did not come up on port {} (log: {})",
            self.port,
            self.log_file().display()
        );
    }

    /// The child has ended.
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
}

/// The `INFO {...}` line a NATS server sends first to every client, if one answers on `port`.
fn info_line(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("INFO ").then_some(line)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jetstream_enabled(port: u16) -> bool {
        info_line(port).is_some_and(|info| info.contains("\"jetstream\":true"))
    }

    #[test]
    fn runs_jetstream_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start();
        let port = server.port;
        assert!(jetstream_enabled(port), "INFO announces JetStream");
        server.stop_gracefully();
        assert!(!server.is_running());
        server.restart();
        server.stop();
        assert!(!server.is_running());
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing answers while stopped"
        );
        server.restart();
        assert_eq!(server.port, port);
        assert!(jetstream_enabled(port));
        let dir = server.dir.clone();
        drop(server);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "stopped on drop"
        );
        assert!(!dir.exists(), "the store is removed on drop");
    }

    #[test]
    fn a_port_answered_by_another_server_is_not_taken_for_ours() {
        let first = NatsServer::start();
        let binary = binary().expect("nats-server");
        // What two fixtures told the same port by `free_port` would do.
        let mut second = NatsServer {
            child: None,
            port: first.port,
            options: Options::default(),
            dir: std::env::temp_dir().join(format!("nats-test-{}-second", std::process::id())),
            binary,
        };
        assert!(second.launch().is_err(), "the port is the first server's");
        let third = NatsServer::start();
        assert_ne!(third.port, first.port);
    }

    #[test]
    fn extra_arguments_reach_the_server() {
        let server = NatsServer::start_with(Options {
            args: vec!["--user".into(), "u".into(), "--pass".into(), "p".into()],
        });
        let info = info_line(server.port).expect("INFO");
        assert!(info.contains("\"auth_required\":true"), "{info}");
    }
}
