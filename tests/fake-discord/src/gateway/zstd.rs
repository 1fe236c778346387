//! zstd-stream transport compression: one compression context per connection for its whole
//! life; each WebSocket message is flushed (not ended) so that the client's one decompression
//! context can decode it as it arrives.
//!
//! Source: discord-api-docs `developers/events/gateway.mdx` ("zstd-stream").

use zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer};

/// A connection's zstd context.
pub struct ZstdStream {
    cctx: CCtx<'static>,
}

impl std::fmt::Debug for ZstdStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdStream").finish_non_exhaustive()
    }
}

/// A zstd error code, by name.
#[derive(Debug, thiserror::Error)]
#[error("zstd: {0}")]
pub struct ZstdError(&'static str);

fn check(result: zstd_safe::SafeResult) -> Result<usize, ZstdError> {
    result.map_err(|code| ZstdError(zstd_safe::get_error_name(code)))
}

impl ZstdStream {
    /// A context at `level`, with a 128 KiB window so thousands of connections stay affordable.
    pub fn new(level: i32) -> Result<Self, ZstdError> {
        let mut cctx = CCtx::create();
        check(cctx.set_parameter(CParameter::CompressionLevel(level)))?;
        check(cctx.set_parameter(CParameter::WindowLog(17)))?;
        Ok(Self { cctx })
    }

    /// Appends to `out` one message made of `parts`, flushed so it can be decoded on its own.
    pub fn compress_parts(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), ZstdError> {
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let directive = if last {
                ZSTD_EndDirective::ZSTD_e_flush
            } else {
                ZSTD_EndDirective::ZSTD_e_continue
            };
            let mut input = InBuffer::around(part);
            loop {
                if out.capacity() - out.len() < 256 {
                    out.reserve(part.len() / 2 + 1_024);
                }
                let pos = out.len();
                let mut output = OutBuffer::around_pos(out, pos);
                let remaining = check(self.cctx.compress_stream2(
                    &mut output,
                    &mut input,
                    directive,
                ))?;
                let consumed = input.pos() == part.len();
                if consumed && (!last || remaining == 0) {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zstd_safe::DCtx;

    #[test]
    fn one_decompression_context_decodes_every_message() {
        let mut zstd = ZstdStream::new(1).expect("context");
        let mut dctx = DCtx::create();
        let big = "y".repeat(200_000) + &"xyz".repeat(50_000);
        for msg in ["{\"op\":10}", big.as_str(), "{\"op\":11}"] {
            let mut frame = Vec::new();
            let (a, b) = msg.as_bytes().split_at(msg.len() / 2);
            zstd.compress_parts(&[a, b], &mut frame).expect("compress");
            let mut out: Vec<u8> = Vec::with_capacity(msg.len() + 64);
            let mut input = InBuffer::around(&frame);
            while input.pos() < frame.len() || out.len() < msg.len() {
                out.reserve(64 * 1024);
                let pos = out.len();
                let mut output = OutBuffer::around_pos(&mut out, pos);
                dctx.decompress_stream(&mut output, &mut input)
                    .expect("decompress");
                if input.pos() == frame.len() && output.pos() == pos {
                    break;
                }
            }
            assert_eq!(out, msg.as_bytes());
        }
    }
}
