//! `twilight-shards-zstd`: the benchmarks' twilight-gateway client at zstd-stream, the same
//! client as `twilight-shards` (`tests/bench/src/twilight/client.rs`) built with twilight-gateway's
//! `zstd` feature (see this package's Cargo.toml for why it is a package of its own).

#[path = "../../src/twilight/client.rs"]
mod client;

fn main() -> anyhow::Result<()> {
    if !cfg!(feature = "zstd") {
        // Without the feature this would be the zlib-stream client under the wrong name.
        anyhow::bail!(
            "built without its `zstd` feature: make bench builds it with --features zstd"
        );
    }
    client::main("zstd-stream")
}
