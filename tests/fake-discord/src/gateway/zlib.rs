//! zlib-stream transport compression: one deflate context per connection for its whole life,
//! every message ending in a sync flush (`00 00 ff ff`), so the client's one inflate context
//! can decode each message as it completes.
//!
//! Source: discord-api-docs `developers/events/gateway.mdx` ("Transport Compression").

use flate2::{Compress, Compression, FlushCompress, Status};

/// The suffix of every zlib-stream message.
pub const SYNC_FLUSH_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A connection's deflate context.
pub struct ZlibStream {
    deflate: Compress,
}

impl std::fmt::Debug for ZlibStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZlibStream")
            .field("total_in", &self.deflate.total_in())
            .field("total_out", &self.deflate.total_out())
            .finish()
    }
}

impl ZlibStream {
    /// A context at `level` (0–9), with the zlib header, as Discord sends it.
    pub fn new(level: u32) -> Self {
        Self {
            deflate: Compress::new(Compression::new(level.min(9)), true),
        }
    }

    /// Compresses one whole message into a new buffer ending in the sync-flush suffix.
    pub fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>, flate2::CompressError> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let start = self.deflate.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 256);
            }
            let consumed = (self.deflate.total_in() - start) as usize;
            let status =
                self.deflate
                    .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)?;
            let consumed = (self.deflate.total_in() - start) as usize;
            // The flush is complete once all input is in and deflate stopped with room to spare.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            if status == Status::BufError && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out.ends_with(&SYNC_FLUSH_SUFFIX));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn one_inflate_context_decodes_every_message_of_the_stream() {
        let mut zlib = ZlibStream::new(6);
        let mut inflate = Decompress::new(true);
        let big = "x".repeat(100_000) + &"abc".repeat(30_000);
        for msg in ["{\"op\":10}", big.as_str(), "{\"op\":11}", big.as_str()] {
            let frame = zlib.compress(msg.as_bytes()).expect("compress");
            assert!(frame.ends_with(&SYNC_FLUSH_SUFFIX));
            let mut out = Vec::with_capacity(msg.len() + 64);
            let before = inflate.total_in();
            while ((inflate.total_in() - before) as usize) < frame.len() {
                let used = (inflate.total_in() - before) as usize;
                out.reserve(1_024);
                inflate
                    .decompress_vec(&frame[used..], &mut out, FlushDecompress::Sync)
                    .expect("inflate");
            }
            assert_eq!(out, msg.as_bytes());
        }
    }
}
