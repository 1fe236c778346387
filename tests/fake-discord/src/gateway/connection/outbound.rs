//! What the connection writes: single frames (Hello, ACKs, op 7/9/1) and its session's queued
//! dispatches after its cursor, a batch at a time, and the bytes written, added to the counters.

use std::sync::atomic::Ordering;

use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{BATCH, Connection, End};
use crate::control::SessionEnd;
use crate::payloads;
use crate::rules::CloseCode;
use crate::session::Payload;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Writes one frame (compressed when asked) and flushes.
    pub(super) async fn send_raw(&mut self, json: &[u8]) -> Result<(), ()> {
        let message = self.encoder.single(json).map_err(|_| ())?;
        self.count_bytes();
        self.ws.send(message).await.map_err(|_| ())
    }

    /// Adds what the encoder wrote since last time to the shared counters.
    fn count_bytes(&mut self) {
        let stats = &self.fake.stats;
        let (json, wire) = (self.encoder.json_bytes, self.encoder.wire_bytes);
        stats
            .payload_bytes_sent
            .fetch_add(json - self.counted.0, Ordering::Relaxed);
        stats
            .wire_bytes_sent
            .fetch_add(wire - self.counted.1, Ordering::Relaxed);
        self.counted = (json, wire);
    }

    /// Writes the session's queued dispatches after the cursor, a batch at a time.
    pub(super) async fn drain(&mut self) -> Option<End> {
        let session = self.session.clone()?;
        self.scratch.clear();
        if let Err(overrun) =
            session.take_after(self.cursor, self.fresh_from, BATCH, &mut self.scratch)
        {
            tracing::warn!(
                connection = self.id,
                session = %session.id,
                wanted = overrun.wanted,
                oldest = overrun.oldest,
                "client fell behind the replay buffer; closing"
            );
            self.fake.stats.overflows.fetch_add(1, Ordering::Relaxed);
            self.fake.end_session(&session, SessionEnd::Overflow);
            return Some(
                self.close(
                    CloseCode::UnknownError.code(),
                    "client too slow: dispatches were lost",
                )
                .await,
            );
        }
        if self.scratch.is_empty() {
            return None;
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let entries = std::mem::take(&mut self.scratch);
        let mut ready = false;
        let mut encoded = Ok(());
        for entry in &entries {
            encoded = match &entry.payload {
                Payload::Event(event) => {
                    self.encoder.push_dispatch(&event.name, entry.seq, &event.d)
                }
                Payload::GuildCreate(index) => {
                    self.guild_buf.clear();
                    payloads::write_guild_create(
                        &mut self.guild_buf,
                        &self.fake.bot,
                        *index,
                        session.large_threshold,
                    );
                    self.encoder
                        .push_dispatch("GUILD_CREATE", entry.seq, &self.guild_buf)
                }
                Payload::Ready(d) => {
                    ready = true;
                    self.encoder.push_dispatch("READY", entry.seq, d)
                }
                Payload::Resumed => {
                    self.encoder
                        .push_dispatch("RESUMED", entry.seq, payloads::RESUMED)
                }
            };
            if encoded.is_err() {
                break;
            }
        }
        let last_seq = entries.last().map_or(self.cursor, |e| e.seq);
        let count = entries.len() as u64;
        let full = entries.len() == BATCH;
        self.scratch = entries;
        if let Err(e) = encoded.and_then(|()| self.encoder.finish(&mut self.messages)) {
            tracing::error!(connection = self.id, error = %e, "dropping the connection");
            return Some(End::Dropped);
        }
        self.count_bytes();
        for message in self.messages.drain(..) {
            if self.ws.feed(message).await.is_err() {
                return Some(End::ByClient(None));
            }
        }
        if self.ws.flush().await.is_err() {
            return Some(End::ByClient(None));
        }
        self.cursor = last_seq;
        session.mark_sent(self.cursor, ready);
        self.fake
            .stats
            .dispatches_sent
            .fetch_add(count, Ordering::Relaxed);
        if full {
            // More may be queued: come back after looking at the socket.
            session.wake.notify_one();
        }
        None
    }
}
