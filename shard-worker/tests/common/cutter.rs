//! A TCP relay in front of a server that a test can cut or black-hole: one process loses its Redis
//! while the others keep theirs (a network partition of one pod). Cut: every relayed connection
//! ends and new ones are refused (fails fast). Black hole: connections stay open and new ones are
//! accepted, but not a byte is relayed any more (every request times out, as behind a dead link).
//! It also notes the first line each connection's client sends: for HTTP, the request line (a
//! gateway URL with its query).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Cutter {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Tells every relayed connection to end (sent on `cut`).
    closing: watch::Sender<u64>,
    /// True while nothing is relayed.
    black_hole: watch::Sender<bool>,
    /// The first line of every relayed connection's client, in the order they came.
    first_lines: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cutter {
    /// Relays `127.0.0.1:<port>` to `127.0.0.1:<target>` until cut.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (closing, _) = watch::channel(0u64);
        let (black_hole, _) = watch::channel(false);
        let (c, tx, hole) = (Arc::clone(&cut), closing.clone(), black_hole.clone());
        let first_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&first_lines);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut closed = tx.subscribe();
                let hole = hole.subscribe();
                let lines = Arc::clone(&lines);
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        () = pump(in_read, out_write, hole.clone(), Some(lines)) => {}
                        () = pump(out_read, in_write, hole, None) => {}
                        _ = closed.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            closing,
            black_hole,
            first_lines,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The first line each relayed connection's client sent, in the order they came.
    pub fn first_lines(&self) -> Vec<String> {
        self.first_lines.lock().expect("lines").clone()
    }

    /// Ends every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.closing.send_modify(|n| *n += 1);
    }

    /// Refuses new connections; the relayed ones go on.
    pub fn refuse(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Keeps every connection open but relays nothing any more (nor on new connections).
    pub fn black_hole(&self) {
        self.black_hole.send_replace(true);
    }

    /// Relays again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.black_hole.send_replace(false);
    }
}

/// Copies `from` to `to`, holding every chunk while the black hole is on; the first line of the
/// first chunk goes to `first_line`, if given.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hole: watch::Receiver<bool>,
    mut first_line: Option<Arc<Mutex<Vec<String>>>>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if let Some(lines) = first_line.take() {
            let text = String::from_utf8_lossy(&buffer[..read]);
            let line = text.lines().next().unwrap_or_default().to_owned();
            lines.lock().expect("lines").push(line);
        }
        if read == 0 || hole.wait_for(|on| !*on).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
