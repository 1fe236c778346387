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
        self.compress_parts(&[input], &mut out)?;
        Ok(out)
    }

    /// Appends to `out` one message made of `parts` (concatenated), ending in the sync-flush
    /// suffix. Taking the message in parts spares copying a shared event body into a frame.
    pub fn compress_parts(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), flate2::CompressError> {
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let flush = if last {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            let start = self.deflate.total_in();
            loop {
                if out.capacity() - out.len() < 64 {
                    out.reserve(part.len() / 2 + 256);
                }
                let consumed = (self.deflate.total_in() - start) as usize;
                let status = self.deflate.compress_vec(&part[consumed..], out, flush)?;
                let consumed = (self.deflate.total_in() - start) as usize;
                let room_left = out.len() < out.capacity();
                // Without a flush, deflate may keep output pending: all input taken is enough.
                // With the sync flush, it is complete once deflate stops with room to spare.
                if consumed == part.len() && (!last || room_left) {
                    break;
                }
                if status == Status::BufError && room_left {
                    break;
                }
            }
        }
        debug_assert!(out.ends_with(&SYNC_FLUSH_SUFFIX));
        Ok(())
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
            // Half the messages in three parts, as dispatches are written.
            let mut frame = Vec::new();
            if msg.len() > 100 {
                let (a, rest) = msg.as_bytes().split_at(7);
                let (b, c) = rest.split_at(rest.len() - 1);
                zlib.compress_parts(&[a, b, c], &mut frame)
                    .expect("compress");
            } else {
                frame = zlib.compress(msg.as_bytes()).expect("compress");
            }
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
