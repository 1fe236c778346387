//! `cluster-probe`: a tiny program the test cluster's tests run inside pods (image
//! `shardset/cluster-probe:dev`, built by `make images`).
//!
//! - no arguments (or `serve`): serve `/healthz` and `/readyz` (200) on `PORT` (8080), log a line at
//!   start, and on SIGTERM log it and exit (after `--term-delay` seconds; `--ignore-term` never
//!   exits on its own: the kubelet's SIGKILL at the end of the grace period ends it). It also
//!   stands in for the shard worker in operator tests until the real worker image exists.
//! - `api <path>`: LIST the collection at an API path through the `kubernetes` Service with the pod's service-account
//!   token (in-cluster config) and print `{"path", "status", "message"}`: 200, or the API's refusal.
//! - `dns <name> [--wait S]`: resolve a name with the pod's resolver (cluster DNS), retrying for up to
//!   S seconds, and print the addresses.
//! - `get <host:port> <path>`: one plain HTTP/1.1 GET; print the status code.
//! - `redis <host:port>`: connect (5 s at most), `AUTH` with `REDIS_PASSWORD` when it is set (by
//!   `secretKeyRef`), then `PING`; print whether it connected and Redis's last reply (`PONG`, or
//!   `NOAUTH ...` without the password). The password is never printed.
//!
//! One-shot modes print one JSON line on stdout and exit 0 when the operation itself ran (the
//! tests judge the answer), non-zero when it could not run at all.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(version, about = "In-cluster probe for the ShardSet test cluster")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve /healthz and /readyz until SIGTERM (the default).
    Serve(ServeArgs),
    /// LIST an API collection path in-cluster with the service-account token; report the answer.
    Api { path: String },
    /// Resolve a DNS name with the pod's resolver.
    Dns {
        name: String,
        /// Keep trying for up to this many seconds (a node just back may still be setting up).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// One HTTP/1.1 GET of `path` from `addr` (host:port); report the status code.
    Get { addr: String, path: String },
    /// Connect to Redis at `addr` (host:port), AUTH with `REDIS_PASSWORD` if set, PING; report.
    Redis { addr: String },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Seconds to wait after SIGTERM before exiting (shows the grace period is honoured).
    #[arg(long, default_value_t = 0)]
    term_delay: u64,
    /// Log SIGTERM but do not exit (the kubelet's SIGKILL ends the container).
    #[arg(long)]
    ignore_term: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode.unwrap_or(Mode::Serve(ServeArgs {
        port: std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(8080),
        ..ServeArgs::default()
    })) {
        Mode::Serve(args) => serve(args).await,
        Mode::Api { path } => api(&path).await,
        Mode::Dns { name, wait } => dns(&name, wait).await,
        Mode::Get { addr, path } => get(&addr, &path).await,
        Mode::Redis { addr } => redis_ping(&addr).await,
    }
}

fn whoami() -> String {
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "?".into());
    let node = std::env::var("NODE_NAME").unwrap_or_else(|_| "?".into());
    format!("pod={pod} node={node}")
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("bind port {}", args.port))?;
    let mut term = signal(SignalKind::terminate())?;
    println!(
        "cluster-probe serving /healthz and /readyz on :{} ({})",
        args.port,
        whoami()
    );
    let server = axum::serve(listener, app);
    tokio::select! {
        res = server => res.context("server")?,
        _ = term.recv() => {}
    }
    println!("cluster-probe received SIGTERM ({})", whoami());
    if args.ignore_term {
        println!("cluster-probe ignoring SIGTERM");
        loop {
            term.recv().await;
            println!("cluster-probe received SIGTERM again, still ignoring it");
        }
    }
    if args.term_delay > 0 {
        tokio::time::sleep(Duration::from_secs(args.term_delay)).await;
    }
    println!("cluster-probe exiting {} s after SIGTERM", args.term_delay);
    Ok(())
}

async fn api(path: &str) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("in-cluster kube config")?;
    // A LIST of the collection at `path` (e.g. /api/v1/namespaces/x/pods).
    let req = kube::api::Request::new(path)
        .list(&kube::api::ListParams::default().limit(1))
        .context("build request")?;
    let line = match client.request_text(req).await {
        Ok(_) => json!({"path": path, "status": 200, "message": "ok"}),
        Err(kube::Error::Api(status)) => {
            json!({"path": path, "status": status.code, "message": status.message})
        }
        Err(e) => bail!("GET {path}: {e}"),
    };
    println!("{line}");
    Ok(())
}

async fn dns(name: &str, wait: u64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match tokio::net::lookup_host((name, 0)).await {
            Ok(it) => {
                let addrs: Vec<String> = it.map(|a| a.ip().to_string()).collect();
                let line = json!({"name": name, "addresses": addrs, "attempts": attempts});
                println!("{line}");
                return Ok(());
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                let line = json!({"name": name, "addresses": [], "attempts": attempts, "error": e.to_string()});
                println!("{line}");
                return Ok(());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn get(addr: &str, path: &str) -> anyhow::Result<()> {
    let host = addr.split(':').next().unwrap_or(addr);
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    })
    .await;
    let line = match reply {
        Ok(Ok(text)) => {
            let status: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            json!({"addr": addr, "path": path, "status": status})
        }
        Ok(Err(e)) => json!({"addr": addr, "path": path, "status": 0, "error": e.to_string()}),
        Err(_) => json!({"addr": addr, "path": path, "status": 0, "error": "timed out after 10 s"}),
    };
    println!("{line}");
    Ok(())
}

/// A RESP command of `args`.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// Reads one reply line (`+PONG`, `-NOAUTH ...`, `+OK`), without its CRLF.
async fn reply_line(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

async fn redis_ping(addr: &str) -> anyhow::Result<()> {
    let password = std::env::var("REDIS_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let connected =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await;
    let mut stream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            println!(
                "{}",
                json!({"addr": addr, "connected": false, "error": e.to_string()})
            );
            return Ok(());
        }
        Err(_) => {
            println!(
                "{}",
                json!({"addr": addr, "connected": false, "error": "timed out after 5 s"})
            );
            return Ok(());
        }
    };
    let talk = async {
        if let Some(password) = &password {
            stream.write_all(&resp(&["AUTH", password])).await?;
            let auth = reply_line(&mut stream).await?;
            if auth != "+OK" {
                return Ok(auth);
            }
        }
        stream.write_all(&resp(&["PING"])).await?;
        reply_line(&mut stream).await
    };
    let line = match tokio::time::timeout(Duration::from_secs(5), talk).await {
        Ok(Ok(reply)) => {
            json!({"addr": addr, "connected": true, "authenticated": password.is_some(), "reply": reply})
        }
        Ok(Err(e)) => json!({"addr": addr, "connected": true, "error": e.to_string()}),
        Err(_) => json!({"addr": addr, "connected": true, "error": "no reply within 5 s"}),
    };
    println!("{line}");
    Ok(())
}
