//! A small gateway client for the tests: tokio-tungstenite plus one zlib inflate context per
//! connection, as Discord clients do. It sends exactly what each test tells it to, so tests can
//! break rules on purpose.

use std::time::Duration;

use anyhow::{Context as _, bail};
use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);
/// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT.
pub const INTENTS: u64 = 1 | (1 << 9) | (1 << 12) | (1 << 15);

/// What the server sent.
#[derive(Debug)]
pub enum Frame {
    Payload(Value),
    /// A close frame, with its code.
    Closed(Option<u16>),
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inflate: Option<Decompress>,
    zstd: Option<zstd_safe::DCtx<'static>>,
    pending: Vec<u8>,
    /// The last dispatch sequence number seen.
    pub seq: Option<u64>,
}

impl Client {
    /// Connects to `base` (`ws://host:port`, or a resume URL) with Discord's query string.
    pub async fn connect(base: &str, zlib: bool) -> anyhow::Result<Self> {
        let query = if zlib {
            "?v=10&encoding=json&compress=zlib-stream"
        } else {
            "?v=10&encoding=json"
        };
        Self::connect_url(&format!("{base}/{query}"), zlib).await
    }

    pub async fn connect_url(url: &str, zlib: bool) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self {
            ws,
            zstd: None,
            inflate: zlib.then(|| Decompress::new(true)),
            pending: Vec::new(),
            seq: None,
        })
    }

    /// Connects with `compress=zstd-stream`.
    pub async fn connect_zstd(base: &str) -> anyhow::Result<Self> {
        let mut client = Self::connect_url(
            &format!("{base}/?v=10&encoding=json&compress=zstd-stream"),
            false,
        )
        .await?;
        client.zstd = Some(zstd_safe::DCtx::create());
        Ok(client)
    }

    /// The next frame, decompressed and parsed.
    pub async fn frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("timed out waiting for a frame")?;
            let data = match message {
                None | Some(Err(_)) => return Ok(Frame::Closed(None)),
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Frame::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(Message::Text(text))) => {
                    if self.inflate.is_some() {
                        bail!("text frame on a zlib-stream connection");
                    }
                    text.as_bytes().to_vec()
                }
                Some(Ok(Message::Binary(data))) if self.zstd.is_some() => {
                    let Some(dctx) = self.zstd.as_mut() else {
                        continue;
                    };
                    let mut input = zstd_safe::InBuffer::around(&data);
                    let mut out: Vec<u8> = Vec::with_capacity(data.len() * 4 + 1_024);
                    loop {
                        out.reserve(16 * 1_024);
                        let pos = out.len();
                        let mut output = zstd_safe::OutBuffer::around_pos(&mut out, pos);
                        dctx.decompress_stream(&mut output, &mut input)
                            .map_err(|c| anyhow::anyhow!(zstd_safe::get_error_name(c)))?;
                        // Done when all input is in and the output did not fill its room.
                        if input.pos() == data.len() && output.pos() < output.capacity() {
                            break;
                        }
                    }
                    out
                }
                Some(Ok(Message::Binary(data))) => {
                    let Some(inflate) = self.inflate.as_mut() else {
                        bail!("binary frame on an uncompressed connection");
                    };
                    self.pending.extend_from_slice(&data);
                    if !self.pending.ends_with(&[0, 0, 0xff, 0xff]) {
                        continue;
                    }
                    let input = std::mem::take(&mut self.pending);
                    let mut out = Vec::with_capacity(input.len() * 4 + 256);
                    let start = inflate.total_in();
                    loop {
                        let used = (inflate.total_in() - start) as usize;
                        if used >= input.len() {
                            break;
                        }
                        out.reserve(input.len() * 2 + 1_024);
                        inflate.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)?;
                    }
                    out
                }
                Some(Ok(_)) => continue,
            };
            let value: Value = serde_json::from_slice(&data)?;
            if let Some(s) = value.get("s").and_then(Value::as_u64) {
                self.seq = Some(s);
            }
            return Ok(Frame::Payload(value));
        }
    }

    /// The next payload; fails on a close.
    pub async fn payload(&mut self) -> anyhow::Result<Value> {
        match self.frame().await? {
            Frame::Payload(value) => Ok(value),
            Frame::Closed(code) => bail!("connection closed with {code:?}"),
        }
    }

    /// Skips payloads until one with `op`.
    pub async fn expect_op(&mut self, op: u64) -> anyhow::Result<Value> {
        loop {
            let value = self.payload().await?;
            if value["op"] == op {
                return Ok(value);
            }
        }
    }

    /// Skips payloads until the dispatch `t`.
    pub async fn expect_dispatch(&mut self, t: &str) -> anyhow::Result<Value> {
        loop {
            let value = self.payload().await?;
            if value["op"] == 0 && value["t"] == t {
                return Ok(value);
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> anyhow::Result<Option<u16>> {
        loop {
            if let Frame::Closed(code) = self.frame().await? {
                return Ok(code);
            }
        }
    }

    pub async fn send(&mut self, value: Value) -> anyhow::Result<()> {
        self.ws.send(Message::text(value.to_string())).await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::text(text.to_owned())).await?;
        Ok(())
    }

    pub async fn heartbeat(&mut self) -> anyhow::Result<()> {
        let seq = self.seq;
        self.send(json!({"op": 1, "d": seq})).await
    }

    pub async fn identify(
        &mut self,
        token: &str,
        shard: [u32; 2],
        intents: u64,
    ) -> anyhow::Result<()> {
        self.send(json!({"op": 2, "d": {
            "token": token,
            "properties": {"os": "linux", "browser": "fake-discord-tests", "device": "fake-discord-tests"},
            "shard": shard,
            "intents": intents,
        }}))
        .await
    }

    pub async fn resume(&mut self, token: &str, session_id: &str, seq: u64) -> anyhow::Result<()> {
        self.send(json!({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}}))
            .await
    }

    /// Hello, then Identify; returns READY's `d`.
    pub async fn start(base: &str, token: &str, shard: [u32; 2]) -> anyhow::Result<(Self, Value)> {
        let mut client = Self::connect(base, true).await?;
        client.expect_op(10).await?;
        client.identify(token, shard, INTENTS).await?;
        let ready = client.expect_dispatch("READY").await?;
        Ok((client, ready["d"].clone()))
    }

    /// Hello, Identify with `intents`, READY, and every GUILD_CREATE (with the GUILDS intent),
    /// so that the next dispatch is a new one.
    pub async fn ready(
        base: &str,
        token: &str,
        shard: [u32; 2],
        intents: u64,
    ) -> anyhow::Result<Self> {
        let mut client = Self::connect(base, true).await?;
        client.expect_op(10).await?;
        client.identify(token, shard, intents).await?;
        let ready = client.expect_dispatch("READY").await?;
        let guilds = ready["d"]["guilds"].as_array().map_or(0, Vec::len);
        if intents & 1 != 0 {
            for _ in 0..guilds {
                client.expect_dispatch("GUILD_CREATE").await?;
            }
        }
        Ok(client)
    }

    /// Heartbeats and reads the ACK: every frame sent before has been handled. Anything else
    /// arriving first is an error, so nothing unexpected slips by unread.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        self.heartbeat().await?;
        let next = self.payload().await?;
        if next["op"] != 11 {
            bail!("expected the heartbeat ACK, got {next}");
        }
        Ok(())
    }

    /// Closes with `code` (1000/1001 end the session; others keep it resumable).
    pub async fn close(mut self, code: u16) -> anyhow::Result<()> {
        self.ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "test".into(),
            }))
            .await?;
        // Read until the server's close answers ours.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        Ok(())
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_tcp(self) {
        drop(self);
    }
}
