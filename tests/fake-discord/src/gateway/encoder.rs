//! Turns gateway payloads into WebSocket messages for one connection: JSON text frames, or
//! binary zlib-stream or zstd-stream frames through the connection's single compression context.
//!
//! A batch of messages is written into one buffer and handed out as slices of it, so a busy
//! connection allocates once per batch rather than once per message, and a shared event body is
//! fed to deflate where it lies instead of being copied into a frame first.

use std::ops::Range;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::zlib::ZlibStream;
use super::zstd::ZstdStream;

/// The transport compression a connection asked for (`compress=` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// JSON text frames.
    Plain,
    /// `zlib-stream`, at this deflate level.
    Zlib(u32),
    /// `zstd-stream`, at this zstd level.
    Zstd(i32),
}

#[derive(Debug)]
enum Compressor {
    Plain,
    Zlib(ZlibStream),
    Zstd(ZstdStream),
}

/// Encoding failed (a deflate error; or invalid UTF-8, which our writers never produce).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a gateway message: {0}")]
pub struct EncodeError(String);

/// One connection's encoder.
#[derive(Debug)]
pub struct Encoder {
    compressor: Compressor,
    batch: Vec<u8>,
    ranges: Vec<Range<usize>>,
    prefix: Vec<u8>,
    /// JSON bytes encoded so far (before compression).
    pub json_bytes: u64,
    /// Bytes handed to the socket so far (after compression).
    pub wire_bytes: u64,
}

impl Encoder {
    pub fn new(transport: Transport) -> Result<Self, EncodeError> {
        let compressor = match transport {
            Transport::Plain => Compressor::Plain,
            Transport::Zlib(level) => Compressor::Zlib(ZlibStream::new(level)),
            Transport::Zstd(level) => {
                Compressor::Zstd(ZstdStream::new(level).map_err(|e| EncodeError(e.to_string()))?)
            }
        };
        Ok(Self {
            compressor,
            batch: Vec::new(),
            ranges: Vec::new(),
            prefix: Vec::with_capacity(64),
            json_bytes: 0,
            wire_bytes: 0,
        })
    }

    /// Adds a message made of `parts` to the batch.
    pub fn push(&mut self, parts: &[&[u8]]) -> Result<(), EncodeError> {
        let start = self.batch.len();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match &mut self.compressor {
            Compressor::Zlib(zlib) => zlib
                .compress_parts(parts, &mut self.batch)
                .map_err(|e| EncodeError(e.to_string()))?,
            Compressor::Zstd(zstd) => zstd
                .compress_parts(parts, &mut self.batch)
                .map_err(|e| EncodeError(e.to_string()))?,
            Compressor::Plain => {
                self.batch.reserve(len);
                for part in parts {
                    self.batch.extend_from_slice(part);
                }
            }
        }
        self.json_bytes += len as u64;
        self.wire_bytes += (self.batch.len() - start) as u64;
        self.ranges.push(start..self.batch.len());
        Ok(())
    }

    /// Adds a dispatch `{"t":..,"s":..,"op":0,"d":<d>}` to the batch.
    pub fn push_dispatch(&mut self, event: &str, seq: u64, d: &[u8]) -> Result<(), EncodeError> {
        let mut prefix = std::mem::take(&mut self.prefix);
        prefix.clear();
        crate::payloads::write_dispatch_prefix(&mut prefix, event, seq);
        let result = self.push(&[&prefix, d, b"}"]);
        self.prefix = prefix;
        result
    }

    /// Hands out the batch's messages, in order, into `out`.
    pub fn finish(&mut self, out: &mut Vec<Message>) -> Result<(), EncodeError> {
        let next_capacity = self.batch.len();
        let all = Bytes::from(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(next_capacity.min(256 * 1024)),
        ));
        for range in self.ranges.drain(..) {
            let bytes = all.slice(range);
            out.push(if !matches!(self.compressor, Compressor::Plain) {
                Message::Binary(bytes)
            } else {
                Message::Text(Utf8Bytes::try_from(bytes).map_err(|e| EncodeError(e.to_string()))?)
            });
        }
        Ok(())
    }

    /// One message on its own.
    pub fn single(&mut self, json: &[u8]) -> Result<Message, EncodeError> {
        let mut out = Vec::with_capacity(1);
        self.push(&[json])?;
        self.finish(&mut out)?;
        out.pop().ok_or_else(|| EncodeError("empty batch".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(inflater: &mut Decompress, frame: &[u8]) -> String {
        let mut out = Vec::with_capacity(frame.len() * 8 + 64);
        let before = inflater.total_in();
        while ((inflater.total_in() - before) as usize) < frame.len() {
            let used = (inflater.total_in() - before) as usize;
            out.reserve(1_024);
            inflater
                .decompress_vec(&frame[used..], &mut out, FlushDecompress::Sync)
                .expect("inflate");
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_batch_decodes_message_by_message_in_both_encodings() {
        for zlib in [None, Some(1), Some(6)] {
            let transport = zlib.map_or(Transport::Plain, Transport::Zlib);
            let mut encoder = Encoder::new(transport).expect("encoder");
            let mut inflater = Decompress::new(true);
            let mut out = Vec::new();
            encoder.push(&[br#"{"op":10}"#]).expect("push");
            encoder
                .push_dispatch("MESSAGE_CREATE", 7, br#"{"id":"1"}"#)
                .expect("push");
            encoder.push_dispatch("RESUMED", 8, b"{}").expect("push");
            encoder.finish(&mut out).expect("finish");
            let texts: Vec<String> = out
                .iter()
                .map(|m| match m {
                    Message::Binary(b) => inflate(&mut inflater, b),
                    Message::Text(t) => t.as_str().to_owned(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                texts,
                vec![
                    r#"{"op":10}"#.to_owned(),
                    r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"id":"1"}}"#.to_owned(),
                    r#"{"t":"RESUMED","s":8,"op":0,"d":{}}"#.to_owned(),
                ],
                "{zlib:?}"
            );
            assert!(encoder.json_bytes > 0 && encoder.wire_bytes > 0);
        }
    }
}
