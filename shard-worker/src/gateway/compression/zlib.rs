//! `compress=zlib-stream`.
//!
//! The gateway compresses the whole connection as one zlib stream: one inflate context lives as
//! long as the connection (a new connection needs a new [`ZlibStream`]), and a message is complete
//! when its last frame ends with the `Z_SYNC_FLUSH` suffix `00 00 ff ff`.
//! Source: discord-api-docs `developers/events/gateway.mdx`, "Transport Compression".
//!
//! The stream never ends, so its adler32 trailer is never checked: the inflater reads the two
//! zlib header bytes itself and then inflates raw deflate, which skips computing a checksum over
//! every byte received (5 % of the worker's CPU under load).

use flate2::{Decompress, FlushDecompress, Status};

use super::{DecodeError, MAX_MESSAGE_BYTES, give_buffer, reserve_within, take_buffer};

/// The suffix that ends every complete zlib-stream message.
pub const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One connection's zlib-stream inflater.
pub struct ZlibStream {
    inflater: Decompress,
    /// Header bytes (RFC 1950: CMF, FLG) still to read at the start of the stream.
    header: Vec<u8>,
    /// Frames of a message that has not ended yet (rare: Discord sends whole messages).
    pending: Vec<u8>,
    output: Vec<u8>,
    /// The longest message inflated ([`MAX_MESSAGE_BYTES`] but in tests).
    limit: usize,
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
        Self::with_limit(MAX_MESSAGE_BYTES)
    }

    /// A fresh inflater that refuses messages longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            // Raw deflate: the zlib header is read by hand, the trailer never comes.
            inflater: Decompress::new(false),
            header: Vec::with_capacity(2),
            pending: Vec::new(),
            output: Vec::new(),
            limit,
        }
    }

    /// Feeds one binary frame. Returns the inflated message when this frame completes one, `None`
    /// when the message continues in the next frame.
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
        let frame = self.skip_header(frame)?;
        if !frame.ends_with(&ZLIB_SUFFIX) {
            // Compressed bytes of one message are never more than its inflated bytes' cap.
            if self.pending.len() + frame.len() > self.limit {
                self.pending = Vec::new();
                return Err(DecodeError::TooLarge { limit: self.limit });
            }
            self.pending.extend_from_slice(frame);
            return Ok(None);
        }
        if self.output.capacity() == 0 {
            self.output = take_buffer();
        }
        self.output.clear();
        if self.pending.is_empty() {
            inflate(&mut self.inflater, frame, &mut self.output, self.limit)?;
        } else {
            self.pending.extend_from_slice(frame);
            let input = std::mem::take(&mut self.pending);
            inflate(&mut self.inflater, &input, &mut self.output, self.limit)?;
        }
        Ok(Some(&self.output))
    }
}

impl ZlibStream {
    /// Gives the output buffer back to the pool: call it once the last message returned by
    /// [`ZlibStream::push`] is no longer needed, so that an idle connection holds no buffer.
    pub fn recycle(&mut self) {
        give_buffer(std::mem::take(&mut self.output));
    }

    /// Consumes the two zlib header bytes at the start of the stream (checking them), returns
    /// the rest of the frame.
    fn skip_header<'f>(&mut self, frame: &'f [u8]) -> Result<&'f [u8], DecodeError> {
        if self.header.len() == 2 {
            return Ok(frame);
        }
        let take = (2 - self.header.len()).min(frame.len());
        self.header.extend_from_slice(&frame[..take]);
        if self.header.len() == 2 {
            let (cmf, flg) = (self.header[0], self.header[1]);
            let deflate = cmf & 0x0f == 8 && cmf >> 4 <= 7;
            let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
            let preset_dictionary = flg & 0x20 != 0;
            if !deflate || !check || preset_dictionary {
                return Err(DecodeError::ZlibHeader);
            }
        }
        Ok(&frame[take..])
    }
}

fn inflate(
    inflater: &mut Decompress,
    input: &[u8],
    output: &mut Vec<u8>,
    limit: usize,
) -> Result<(), DecodeError> {
    let start = inflater.total_in();
    loop {
        let consumed = (inflater.total_in() - start) as usize;
        if output.len() == output.capacity() {
            // Compressed JSON inflates about 5–10×.
            reserve_within(output, (input.len() - consumed).max(1024) * 8, limit)?;
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
    fn recycled_buffers_are_reused_not_kept() {
        let frames = compress_stream(&[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut stream = ZlibStream::new();
        stream.push(&frames[0]).expect("inflate");
        stream.recycle();
        assert_eq!(
            stream.output.capacity(),
            0,
            "an idle stream holds no buffer"
        );
        let out = stream.push(&frames[1]).expect("inflate").expect("complete");
        assert_eq!(out, br#"{"op":11}"#);
    }

    #[test]
    fn a_header_split_over_frames_is_read() {
        let frames = compress_stream(&[br#"{"op":10}"#]);
        let mut stream = ZlibStream::new();
        assert!(stream.push(&frames[0][..1]).expect("first byte").is_none());
        let out = stream
            .push(&frames[0][1..])
            .expect("inflate")
            .expect("complete");
        assert_eq!(out, br#"{"op":10}"#);
    }

    #[test]
    fn a_corrupt_stream_is_an_error() {
        let mut stream = ZlibStream::new();
        let mut garbage = vec![1, 2, 3, 4, 5];
        garbage.extend_from_slice(&ZLIB_SUFFIX);
        assert!(stream.push(&garbage).is_err());
    }

    #[test]
    fn a_message_may_inflate_to_the_cap_and_not_one_byte_more() {
        let limit = 64 * 1024;
        let exact = vec![b'a'; limit];
        let frames = compress_stream(&[&exact]);
        let mut stream = ZlibStream::with_limit(limit);
        assert_eq!(
            stream
                .push(&frames[0])
                .expect("at the cap")
                .map(<[u8]>::len),
            Some(limit)
        );

        let over = vec![b'a'; limit + 1];
        let frames = compress_stream(&[&over]);
        let mut stream = ZlibStream::with_limit(limit);
        let error = stream.push(&frames[0]).expect_err("over the cap");
        assert!(matches!(error, DecodeError::TooLarge { limit: l } if l == limit));
        assert_eq!(error.metric_label(), "too_large");
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_inflating_it() {
        // 32 MiB of one byte compress to about 32 KiB: the inflater stops at the cap.
        let limit = 1 << 20;
        let chunk = vec![b'a'; 1 << 20];
        let mut compressor = Compress::new(Compression::default(), true);
        let mut bomb = Vec::with_capacity(64 * 1024);
        for i in 0..32 {
            let flush = if i == 31 {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            let start = compressor.total_in();
            while ((compressor.total_in() - start) as usize) < chunk.len()
                || (flush == FlushCompress::Sync && !bomb.ends_with(&ZLIB_SUFFIX))
            {
                if bomb.capacity() - bomb.len() < 1024 {
                    bomb.reserve(64 * 1024);
                }
                let consumed = (compressor.total_in() - start) as usize;
                compressor
                    .compress_vec(&chunk[consumed..], &mut bomb, flush)
                    .expect("compress");
            }
        }
        assert!(bomb.len() < 64 * 1024, "a bomb: {} bytes", bomb.len());
        let mut stream = ZlibStream::with_limit(limit);
        assert!(matches!(
            stream.push(&bomb),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(
            stream.output.capacity() <= super::super::POOLED_CAPACITY.max(limit + 1),
            "memory stayed bounded: {} bytes",
            stream.output.capacity()
        );
    }

    #[test]
    fn frames_piling_up_past_the_cap_are_refused() {
        let mut stream = ZlibStream::with_limit(1024);
        let frames = compress_stream(&[br#"{"op":10}"#]);
        assert!(stream.push(&frames[0]).expect("a message").is_some());
        // Frames without the suffix: a message that never ends.
        let endless = vec![0x01; 600];
        assert!(stream.push(&endless).expect("pending").is_none());
        assert!(matches!(
            stream.push(&endless),
            Err(DecodeError::TooLarge { limit: 1024 })
        ));
    }

    #[test]
    fn a_new_connection_cannot_continue_an_old_stream() {
        let frames = compress_stream(&[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut fresh = ZlibStream::new();
        // The second message depends on the first one's context (and lacks the zlib header).
        assert!(fresh.push(&frames[1]).is_err());
    }
}
