//! `twilight-shards`: the benchmarks' twilight-gateway client at zlib-stream (the workspace's
//! twilight-gateway features: `zlib`, no `zstd`). The client itself is [`client`].

mod client;

fn main() -> anyhow::Result<()> {
    client::main("zlib-stream")
}
