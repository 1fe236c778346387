//! Transport compression: `compress=zlib-stream`.
//!
//! The gateway compresses the whole connection as one zlib stream: one inflate context lives as
//! long as the connection (a new connection needs a new [`ZlibStream`]), and a message is complete
//! when its last frame ends with the `Z_SYNC_FLUSH` suffix `00 00 ff ff`.
//! Source: discord-api-docs `developers/events/gateway.mdx`, "Transport Compression".
//!
//! zstd-stream is not implemented: zlib-stream is what Discord recommends by default, and one
//! codec keeps the per-connection memory small.

use flate2::{Decompress, FlushDecompress, Status};

/// The suffix that ends every complete zlib-stream message.
pub const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output capacity kept between messages; a larger buffer (after a big GUILD_CREATE) is released
/// so that thousands of idle shards do not each hold their largest message forever. Typical
/// events (MESSAGE_CREATE, presence updates) fit.
const KEEP_CAPACITY: usize = 8 * 1024;

/// Why a frame could not be inflated: the stream is corrupt and the connection must be dropped.
#[derive(Debug, thiserror::Error)]
#[error("zlib-stream inflate failed: {0}")]
pub struct InflateError(#[from] flate2::DecompressError);

/// One connection's zlib-stream inflater.
pub struct ZlibStream {
    inflater: Decompress,
    /// Frames of a message that has not ended yet (rare: Discord sends whole messages).
    pending: Vec<u8>,
    output: Vec<u8>,
}

impl Default for ZlibStream {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ZlibStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZlibStream")
            .field("total_in", &self.inflater.total_in())
            .field("total_out", &self.inflater.total_out())
            .finish_non_exhaustive()
    }
}

impl ZlibStream {
    /// A fresh inflater, for a new connection.
    pub fn new() -> Self {
        Self {
            inflater: Decompress::new(true),
            pending: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Feeds one binary frame. Returns the inflated message when this frame completes one, `None`
    /// when the message continues in the next frame.
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<&[u8]>, InflateError> {
        if !frame.ends_with(&ZLIB_SUFFIX) {
            self.pending.extend_from_slice(frame);
            return Ok(None);
        }
        if self.output.capacity() > KEEP_CAPACITY {
            self.output = Vec::new();
        }
        self.output.clear();
        if self.pending.is_empty() {
            inflate(&mut self.inflater, frame, &mut self.output)?;
        } else {
            self.pending.extend_from_slice(frame);
            let input = std::mem::take(&mut self.pending);
            inflate(&mut self.inflater, &input, &mut self.output)?;
        }
        Ok(Some(&self.output))
    }
}

fn inflate(
    inflater: &mut Decompress,
    input: &[u8],
    output: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let start = inflater.total_in();
    loop {
        let consumed = (inflater.total_in() - start) as usize;
        if output.len() == output.capacity() {
            // Compressed JSON inflates about 5–10×.
            output.reserve((input.len() - consumed).max(1024) * 8);
        }
        let before = output.len();
        let status = inflater.decompress_vec(&input[consumed..], output, FlushDecompress::Sync)?;
        let consumed = (inflater.total_in() - start) as usize;
        let done = consumed == input.len() && output.len() < output.capacity();
        let stalled = output.len() == before && consumed == input.len();
        if done || stalled || status == Status::StreamEnd {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// The server side of zlib-stream: one compressor, each message sync-flushed.
    fn compress_stream(messages: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut compressor = Compress::new(Compression::default(), true);
        messages
            .iter()
            .map(|m| {
                let mut out = Vec::with_capacity(m.len() + 64);
                let start = compressor.total_in();
                loop {
                    let consumed = (compressor.total_in() - start) as usize;
                    if out.len() == out.capacity() {
                        out.reserve(64);
                    }
                    compressor
                        .compress_vec(&m[consumed..], &mut out, FlushCompress::Sync)
                        .expect("compress");
                    if (compressor.total_in() - start) as usize == m.len()
                        && out.ends_with(&ZLIB_SUFFIX)
                    {
                        return out;
                    }
                }
            })
            .collect()
    }

    #[test]
    fn inflates_a_stream_of_messages_with_one_context() {
        let big = format!(r#"{{"op":0,"d":"{}"}}"#, "x".repeat(200_000));
        let messages: Vec<&[u8]> = vec![br#"{"op":10}"#, big.as_bytes(), br#"{"op":11}"#];
        let frames = compress_stream(&messages);
        let mut stream = ZlibStream::new();
        for (frame, expected) in frames.iter().zip(&messages) {
            let out = stream.push(frame).expect("inflate").expect("complete");
            assert_eq!(out, *expected);
        }
    }

    #[test]
    fn joins_a_message_split_over_frames() {
        let frames = compress_stream(&[br#"{"op":10,"d":{"heartbeat_interval":41250}}"#]);
        let (head, tail) = frames[0].split_at(5);
        let mut stream = ZlibStream::new();
        assert!(stream.push(head).expect("partial").is_none());
        let out = stream.push(tail).expect("inflate").expect("complete");
        assert_eq!(out, br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    }

    #[test]
    fn a_corrupt_stream_is_an_error() {
        let mut stream = ZlibStream::new();
        let mut garbage = vec![1, 2, 3, 4, 5];
        garbage.extend_from_slice(&ZLIB_SUFFIX);
        assert!(stream.push(&garbage).is_err());
    }

    #[test]
    fn a_new_connection_cannot_continue_an_old_stream() {
        let frames = compress_stream(&[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut fresh = ZlibStream::new();
        // The second message depends on the first one's context (and lacks the zlib header).
        assert!(fresh.push(&frames[1]).is_err());
    }
}
