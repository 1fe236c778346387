//! Gateway settings the pod env carries: the transport compression a worker asks for
//! ([`GatewayCompression`], `GATEWAY_COMPRESSION`), spelled once for the operator's CRD field,
//! the env value and the worker's parser.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Transport compression of the gateway connections: `zstd-stream` (the default: the least
/// traffic, about 750 KiB of memory per shard), `zlib-stream` (about a tenth of that memory, more
/// traffic) or `none` (discord-api-docs `developers/events/gateway.mdx`, "Transport
/// Compression").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum GatewayCompression {
    /// `zstd-stream`, the default: Discord's recommendation, the least traffic.
    #[default]
    #[serde(rename = "zstd-stream")]
    ZstdStream,
    /// `zlib-stream`: less memory per connection (a 32 KiB window).
    #[serde(rename = "zlib-stream")]
    ZlibStream,
    /// No transport compression (JSON text frames).
    #[serde(rename = "none")]
    None,
}

impl GatewayCompression {
    /// Every choice.
    pub const ALL: [Self; 3] = [Self::ZstdStream, Self::ZlibStream, Self::None];

    /// The value of `GATEWAY_COMPRESSION` and of the CRD field.
    pub fn name(self) -> &'static str {
        match self {
            Self::ZstdStream => "zstd-stream",
            Self::ZlibStream => "zlib-stream",
            Self::None => "none",
        }
    }
}

impl fmt::Display for GatewayCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GatewayCompression {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == value)
            .ok_or_else(|| format!("{value:?} is not one of zstd-stream, zlib-stream, none"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_serialise_the_same_and_zstd_is_the_default() {
        for compression in GatewayCompression::ALL {
            assert_eq!(compression.name().parse(), Ok(compression));
            assert_eq!(
                serde_json::to_string(&compression).expect("json"),
                format!("\"{compression}\"")
            );
        }
        assert_eq!(
            GatewayCompression::default(),
            GatewayCompression::ZstdStream
        );
        assert!("gzip".parse::<GatewayCompression>().is_err());
    }
}
