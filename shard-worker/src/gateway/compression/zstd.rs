//! `compress=zstd-stream`.
//!
//! The gateway compresses the whole connection as one zstd frame that never ends: one
//! decompression context lives as long as the connection (a new connection needs a new
//! [`ZstdStream`]), and each WebSocket message is flushed, so that everything a message's bytes
//! hold can be decoded as soon as they arrive. Source: discord-api-docs
//! `developers/events/gateway.mdx`, "Transport Compression" (zstd-stream).
//!
//! **Memory.** A streaming decoder keeps the last window of output (the frame's window size,
//! which the server chooses), an input block and an output block: that, not the message size,
//! is what an idle connection holds. Discord's frames declare a 256 KiB window (window log 18;
//! the fake's are 128 KiB). The decoder refuses a frame that declares more ([`WINDOW_LOG_MAX`],
//! zstd's `ZSTD_d_windowLogMax`; zstd's own default would allow 128 MiB), so one connection's
//! context stays under 768 KiB whatever the server sends (`ZSTD_sizeof_DCtx`, checked in the
//! tests: 751,400 bytes at Discord's window, 620,328 at the fake's, 95,976 before the first
//! frame). zlib-stream holds about a tenth of that (a 32 KiB window): the lighter choice for a
//! pod with thousands of quiet shards, `GATEWAY_COMPRESSION=zlib-stream`.

use zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

use super::{DecodeError, MAX_MESSAGE_BYTES, give_buffer, reserve_within, take_buffer};

/// The largest window a frame may declare: 2^18 = 256 KiB, Discord's.
pub const WINDOW_LOG_MAX: u32 = 18;

/// Output grows in steps of at least this much (zstd writes at most a block at a time).
const STEP: usize = 16 * 1024;

/// One connection's zstd-stream decoder.
pub struct ZstdStream {
    context: DCtx<'static>,
    output: Vec<u8>,
    /// The longest message decoded ([`MAX_MESSAGE_BYTES`] but in tests).
    limit: usize,
}

impl std::fmt::Debug for ZstdStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdStream")
            .field("context_bytes", &self.context.sizeof())
            .finish_non_exhaustive()
    }
}

fn zstd_error(code: usize) -> DecodeError {
    DecodeError::Zstd(zstd_safe::get_error_name(code))
}

impl ZstdStream {
    /// A fresh decoder, for a new connection.
    pub fn new() -> Result<Self, DecodeError> {
        Self::with_limit(MAX_MESSAGE_BYTES)
    }

    /// A fresh decoder that refuses messages longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Result<Self, DecodeError> {
        let mut context =
            DCtx::try_create().ok_or(DecodeError::Zstd("cannot allocate a context"))?;
        context
            .set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(zstd_error)?;
        Ok(Self {
            context,
            output: Vec::new(),
            limit,
        })
    }

    /// Bytes the decompression context holds (its window and block buffers included).
    pub fn context_bytes(&self) -> usize {
        self.context.sizeof()
    }

    /// Feeds one binary frame (one WebSocket message). Returns the message it completes; `None`
    /// when it held no output (never seen from Discord, which flushes every message).
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
        if self.output.capacity() == 0 {
            self.output = take_buffer();
        }
        self.output.clear();
        let mut input = InBuffer::around(frame);
        loop {
            if self.output.capacity() - self.output.len() < STEP {
                // Compressed JSON inflates about 5–10×.
                let want = (frame.len() - input.pos()).saturating_mul(8).max(STEP);
                reserve_within(&mut self.output, want, self.limit)?;
            }
            let start = self.output.len();
            let mut output = OutBuffer::around_pos(&mut self.output, start);
            self.context
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            // The Vec's length follows the output's position (zstd-safe sets it).
            let full = output.pos() == output.capacity();
            if self.output.len() > self.limit {
                return Err(DecodeError::TooLarge { limit: self.limit });
            }
            // All input read and room left in the output: the decoder flushed all it could.
            if input.pos() == frame.len() && !full {
                break;
            }
        }
        Ok((!self.output.is_empty()).then_some(&self.output[..]))
    }

    /// Gives the output buffer back to the pool: call it once the last message returned by
    /// [`ZstdStream::push`] is no longer needed, so that an idle connection holds no buffer.
    pub fn recycle(&mut self) {
        give_buffer(std::mem::take(&mut self.output));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zstd_safe::zstd_sys::ZSTD_EndDirective;
    use zstd_safe::{CCtx, CParameter};

    /// The server side of zstd-stream: one context with `window_log`, each message flushed.
    fn compress_stream(window_log: u32, messages: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut context = CCtx::create();
        context
            .set_parameter(CParameter::WindowLog(window_log))
            .expect("window");
        context
            .set_parameter(CParameter::CompressionLevel(3))
            .expect("level");
        messages
            .iter()
            .map(|message| {
                let mut out = Vec::with_capacity(message.len() + 1024);
                let mut input = InBuffer::around(message);
                loop {
                    if out.capacity() - out.len() < 1024 {
                        out.reserve(64 * 1024);
                    }
                    let pos = out.len();
                    let mut output = OutBuffer::around_pos(&mut out, pos);
                    let remaining = context
                        .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_flush)
                        .expect("compress");
                    if input.pos() == message.len() && remaining == 0 {
                        break out;
                    }
                }
            })
            .collect()
    }

    /// JSON-ish text that compresses like events do (not a run of one byte).
    fn events(bytes: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(bytes + 64);
        let mut i = 0u64;
        while text.len() < bytes {
            text.extend_from_slice(
                format!(r#"{{"id":"{}","content":"message {}"}},"#, i * 7919, i % 97).as_bytes(),
            );
            i += 1;
        }
        text.truncate(bytes);
        text
    }

    #[test]
    fn decodes_a_stream_of_messages_with_one_context() {
        let big = events(600_000);
        let messages: Vec<&[u8]> = vec![br#"{"op":10}"#, &big, br#"{"op":11}"#, &big];
        let frames = compress_stream(WINDOW_LOG_MAX, &messages);
        let mut stream = ZstdStream::new().expect("decoder");
        for (frame, expected) in frames.iter().zip(&messages) {
            let out = stream.push(frame).expect("decode").expect("a message");
            assert_eq!(out, *expected);
            stream.recycle();
        }
        assert_eq!(
            stream.output.capacity(),
            0,
            "an idle stream holds no buffer"
        );
        // The bound the module docs state: Discord's window, all buffers counted.
        let bytes = stream.context_bytes();
        assert!(bytes < 768 * 1024, "{bytes} bytes per connection");
    }

    #[test]
    fn a_frame_declaring_a_larger_window_is_refused() {
        let frames = compress_stream(WINDOW_LOG_MAX + 1, &[&events(4 << 20)]);
        let mut stream = ZstdStream::new().expect("decoder");
        match stream.push(&frames[0]) {
            Err(DecodeError::Zstd(reason)) => assert!(reason.contains("memory"), "{reason}"),
            other => panic!("{:?}", other.map(|o| o.map(<[u8]>::len))),
        }
    }

    #[test]
    fn a_message_past_the_cap_is_refused() {
        let bomb = vec![0u8; 8 * 1024 * 1024];
        let frames = compress_stream(WINDOW_LOG_MAX, &[&bomb]);
        assert!(
            frames[0].len() < 16 * 1024,
            "a bomb: {} bytes",
            frames[0].len()
        );
        let mut stream = ZstdStream::with_limit(1024 * 1024).expect("decoder");
        assert!(matches!(
            stream.push(&frames[0]),
            Err(DecodeError::TooLarge { limit }) if limit == 1024 * 1024
        ));
        assert!(stream.output.capacity() <= 1024 * 1024 + 1);
        let exact = events(4096);
        let frames = compress_stream(WINDOW_LOG_MAX, &[&exact]);
        let mut stream = ZstdStream::with_limit(4096).expect("decoder");
        assert_eq!(
            stream.push(&frames[0]).expect("at the cap"),
            Some(&exact[..])
        );
    }

    #[test]
    fn a_new_connection_cannot_continue_an_old_stream_and_garbage_is_an_error() {
        let frames = compress_stream(WINDOW_LOG_MAX, &[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut fresh = ZstdStream::new().expect("decoder");
        // The second message has no frame header: it continues the first one's frame.
        assert!(fresh.push(&frames[1]).is_err());
        let mut fresh = ZstdStream::new().expect("decoder");
        assert!(fresh.push(b"not zstd at all").is_err());
    }
}
