//! Transport compression: which one a shard asks for (`compress=` in the gateway URL; the choice
//! is [`GatewayCompression`], `GATEWAY_COMPRESSION`), and one [`Decoder`] per connection that
//! turns its binary frames back into JSON messages.
//!
//! Source: discord-api-docs `developers/events/gateway.mdx`, "Transport Compression": the whole
//! connection is one stream (one context for its whole life, a new one for a new connection).
//! - [`zstd`]: `zstd-stream`, the default (Discord's recommendation since 2024; about 40 % less
//!   traffic than zlib for the same events). Memory is bounded by a window cap, see there.
//! - [`zlib`]: `zlib-stream`, a message ends with `00 00 ff ff`.
//! - `none`: JSON text frames.
//!
//! **Size cap.** A few kilobytes on the wire can inflate to gigabytes (a decompression bomb), and
//! nothing but the gateway decides what it sends. Every decoder therefore inflates a message only
//! up to [`MAX_MESSAGE_BYTES`]; beyond it the stream is abandoned ([`DecodeError::TooLarge`]) and
//! the shard closes the connection resumably (and counts it). The same cap bounds a message
//! tungstenite reads uncompressed (`shard/connection.rs`), so it is the one setting for every
//! gateway message whatever its codec. Output buffers come from a small per-thread pool and go back to it once the
//! message is handled ([`Decoder::recycle`]), so an idle connection holds no output buffer.

pub mod zlib;
pub mod zstd;

pub use shardset_contract::GatewayCompression;
pub use zlib::ZlibStream;
pub use zstd::ZstdStream;

/// The largest gateway message a shard accepts, inflated (or as read, when not compressed).
/// Discord documents no maximum; its largest payloads (READY, the `GUILD_CREATE` of a large
/// guild) are a few megabytes, so 32 MiB leaves a wide margin while bounding what one connection
/// can make the worker allocate.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The gateway URL's `compress=` value for `compression` (`None`: the parameter is left out).
pub fn compress_param(compression: GatewayCompression) -> Option<&'static str> {
    match compression {
        GatewayCompression::ZstdStream | GatewayCompression::ZlibStream => Some(compression.name()),
        GatewayCompression::None => None,
    }
}

/// Why a frame could not be decoded: the stream is corrupt (or a message too large) and the
/// connection must be dropped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("zlib-stream inflate failed: {0}")]
    Inflate(#[from] flate2::DecompressError),
    #[error("zlib-stream does not start with a zlib header (deflate, no preset dictionary)")]
    ZlibHeader,
    #[error("zstd-stream decompression failed: {0}")]
    Zstd(&'static str),
    #[error("a gateway message inflates past {limit} bytes")]
    TooLarge { limit: usize },
}

impl DecodeError {
    /// A fixed label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Inflate(_) | Self::ZlibHeader | Self::Zstd(_) => "corrupt",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// One connection's decoder, for the compression it asked for.
#[derive(Debug)]
pub enum Decoder {
    Zstd(ZstdStream),
    Zlib(ZlibStream),
    /// `none`: a binary frame (rare: Discord sends text) is the message itself.
    Plain,
}

impl Decoder {
    /// A fresh decoder, for a new connection.
    pub fn new(compression: GatewayCompression) -> Result<Self, DecodeError> {
        Ok(match compression {
            GatewayCompression::ZstdStream => Self::Zstd(ZstdStream::new()?),
            GatewayCompression::ZlibStream => Self::Zlib(ZlibStream::new()),
            GatewayCompression::None => Self::Plain,
        })
    }

    /// Feeds one binary frame. Returns the message when this frame completes one, `None` when
    /// it continues in the next frame.
    pub fn push<'a>(&'a mut self, frame: &'a [u8]) -> Result<Option<&'a [u8]>, DecodeError> {
        match self {
            Self::Zstd(zstd) => zstd.push(frame),
            Self::Zlib(zlib) => zlib.push(frame),
            Self::Plain if frame.len() > MAX_MESSAGE_BYTES => Err(DecodeError::TooLarge {
                limit: MAX_MESSAGE_BYTES,
            }),
            Self::Plain => Ok(Some(frame)),
        }
    }

    /// Gives the output buffer back to the pool: call it once the last message returned by
    /// [`Decoder::push`] is no longer needed.
    pub fn recycle(&mut self) {
        match self {
            Self::Zstd(zstd) => zstd.recycle(),
            Self::Zlib(zlib) => zlib.recycle(),
            Self::Plain => {}
        }
    }
}

/// Output buffers larger than this are dropped rather than pooled.
const POOLED_CAPACITY: usize = 256 * 1024;
/// Buffers kept per thread (about the number of shards handling a message at the same moment).
const POOL_SIZE: usize = 16;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty output buffer, from the pool when it has one.
fn take_buffer() -> Vec<u8> {
    POOL.with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default()
}

/// Gives `buffer` back to the pool (dropped when the pool is full or the buffer large).
fn give_buffer(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > POOLED_CAPACITY {
        return;
    }
    buffer.clear();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_SIZE {
            pool.push(buffer);
        }
    });
}

/// Room for the next step of an inflate loop: at least `want` more bytes, never past `limit + 1`
/// in total (one byte over the cap is how a decoder notices a message too large).
fn reserve_within(output: &mut Vec<u8>, want: usize, limit: usize) -> Result<(), DecodeError> {
    if output.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    // At least doubling (amortised, like `reserve`), but exactly: never past the cap.
    let room = want.max(output.len()).max(1).min(limit + 1 - output.len());
    output.reserve_exact(room);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_compression_or_nothing() {
        assert_eq!(
            compress_param(GatewayCompression::default()),
            Some("zstd-stream")
        );
        assert_eq!(
            compress_param(GatewayCompression::ZlibStream),
            Some("zlib-stream")
        );
        assert_eq!(compress_param(GatewayCompression::None), None);
    }

    #[test]
    fn a_plain_decoder_passes_frames_through_under_the_cap() {
        let mut decoder = Decoder::new(GatewayCompression::None).expect("decoder");
        assert_eq!(
            decoder.push(br#"{"op":11}"#).expect("plain"),
            Some(&br#"{"op":11}"#[..])
        );
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decoder.push(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn reserve_within_stops_one_byte_past_the_limit() {
        let mut output = Vec::new();
        reserve_within(&mut output, 1_000, 10).expect("room");
        assert_eq!(output.capacity(), 11);
        output.resize(11, 0);
        assert!(matches!(
            reserve_within(&mut output, 1, 10),
            Err(DecodeError::TooLarge { limit: 10 })
        ));
    }
}
